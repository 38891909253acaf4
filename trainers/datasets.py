"""The named data sets (MNIST, Fashion-MNIST, KMNIST): their statistics and sizes, and where
they are looked for on disk; ``DataError``, the one-line error about the data."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from budgetnas.trainers.sources import (
    TORCHVISION_OTHERS,
)


class DataError(Exception):
    """The data set is missing or unreadable; the message names the folder and the files."""


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    torchvision_class: str
    mean: float
    std: float
    num_classes: int = 10
    in_channels: int = 1
    image_size: int = 28
    train_size: int = 60_000  # images in the training set (validation is carved from it)


DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo("mnist", "MNIST", 0.1307, 0.3081),
    "fashion-mnist": DatasetInfo("fashion-mnist", "FashionMNIST", 0.2860, 0.3530),
    "kmnist": DatasetInfo("kmnist", "KMNIST", 0.1918, 0.3483),
}


def dataset_info(name: str) -> DatasetInfo:
    key = name.lower().replace("_", "-")
    if key not in DATASETS:
        known = ", ".join([*DATASETS, *TORCHVISION_OTHERS])
        raise DataError(
            f"unknown dataset {name!r}; choose one of {known}, or --data PATH for your own "
            "images (a class-per-folder tree or an .npz)"
        )
    return DATASETS[key]


def default_data_dir() -> Path:
    """``$BUDGETNAS_DATA`` if set, else ``~/.cache/budgetnas/data``."""
    env = os.environ.get("BUDGETNAS_DATA")
    return Path(env) if env else Path.home() / ".cache" / "budgetnas" / "data"
