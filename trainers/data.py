"""Data sets as uint8 tensors on the device, split once into train / validation / test.

The images are read through torchvision's dataset classes (so the on-disk layout is theirs),
then held as one uint8 tensor per split on the training device: a batch is an index slice,
with no DataLoader and no per-sample transforms. The test split is loaded only on request
(``load_test``): the search never sees it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch


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
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[key]


def default_data_dir() -> Path:
    """``$BUDGETNAS_DATA`` if set, else ``~/.cache/budgetnas/data``."""
    env = os.environ.get("BUDGETNAS_DATA")
    return Path(env) if env else Path.home() / ".cache" / "budgetnas" / "data"


def _torchvision_split(info: DatasetInfo, root: Path, *, train: bool, download: bool):
    import torchvision.datasets as tvd

    cls = getattr(tvd, info.torchvision_class)
    raw = root / info.torchvision_class / "raw"
    expected = [os.path.splitext(os.path.basename(url))[0] for url, _ in cls.resources]
    try:
        return cls(root=str(root), train=train, download=download)
    except Exception as err:  # torchvision raises RuntimeError, URLError, AssertionError...
        missing = [f for f in expected if not (raw / f).is_file()]
        if missing:
            hint = "" if download else " (or pass --download on a machine that is online)"
            raise DataError(
                f"{info.name}: data not found in {raw}: missing {', '.join(missing)}; "
                f"put the decompressed IDX files there or point --data-dir at their root{hint}"
            ) from None
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(
            f"{info.name}: could not read the IDX files in {raw} (truncated or not IDX?): {reason}"
        ) from None


@dataclass
class Split:
    """Images (N, C, H, W) uint8 and labels (N,) int64, both on one device."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def to(self, device: torch.device | str) -> Split:
        return Split(self.x.to(device), self.y.to(device))


SUBSET_SEED = 0  # the fixed permutation lower-fidelity rungs take their images from


@dataclass
class TrainVal:
    info: DatasetInfo
    train: Split
    val: Split
    digest: str = ""  # sha256 of the images and labels of both splits, as loaded

    def first(self, n: int) -> TrainVal:
        """The first ``n`` training images of a fixed permutation of the training split (in
        their original order), the same validation split: nested, ``first(m)`` holds
        ``first(n)`` for ``m > n``; all of it for ``n >= len(train)``."""
        if n >= len(self.train):
            return self
        gen = torch.Generator().manual_seed(SUBSET_SEED)
        keep = torch.randperm(len(self.train), generator=gen)[:n].sort().values
        keep = keep.to(self.train.x.device)
        return TrainVal(self.info, Split(self.train.x[keep], self.train.y[keep]), self.val)


def _digest(*splits: Split) -> str:
    h = hashlib.sha256()
    for split in splits:
        for t in (split.x, split.y):
            h.update(str((tuple(t.shape), t.dtype)).encode())
            h.update(t.contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class DataConfig:
    """Which data a search trains and selects on: the data set and its train/validation split.

    ``data_dir`` and ``download`` say where the files are and how to get them; they do not
    change what is loaded, so they are not part of ``fingerprint()``.
    """

    dataset: str = "mnist"
    val_size: int = 5000
    split_seed: int = 0
    train_subset: int | None = None
    data_dir: str | None = None  # default: $BUDGETNAS_DATA, else ~/.cache/budgetnas/data
    download: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "dataset", dataset_info(self.dataset).name)  # canonical name
        if self.val_size < 1:
            raise DataError(f"--val-size must be at least 1, got {self.val_size}")
        if self.train_subset is not None and self.train_subset < 1:
            raise DataError(f"--train-subset must be at least 1, got {self.train_subset}")

    @property
    def info(self) -> DatasetInfo:
        return dataset_info(self.dataset)

    @property
    def train_images(self) -> int:
        """Images in the training split as loaded (a subset, or all but validation)."""
        return self.train_subset or self.info.train_size - self.val_size

    def fingerprint(self) -> dict[str, Any]:
        """What defines the loaded splits (not where they are read from)."""
        return {
            "dataset": self.dataset,
            "val_size": self.val_size,
            "split_seed": self.split_seed,
            "train_subset": self.train_subset,
        }

    def load(self, device: torch.device | str = "cpu") -> TrainVal:
        return load_train_val(
            self.dataset,
            data_dir=self.data_dir,
            val_size=self.val_size,
            split_seed=self.split_seed,
            train_subset=self.train_subset,
            device=device,
            download=self.download,
        )

    def load_test(self, device: torch.device | str = "cpu") -> Split:
        """The held-out test split: for reporting final numbers only, never for selection."""
        return load_test(self.dataset, data_dir=self.data_dir, device=device)


def _as_split(ds) -> Split:
    x = ds.data
    if not isinstance(x, torch.Tensor):  # pragma: no cover - all three classes give tensors
        x = torch.as_tensor(x)
    y = torch.as_tensor(ds.targets, dtype=torch.int64)
    return Split(x.to(torch.uint8).unsqueeze(1).contiguous(), y)


def split_indices(n: int, *, val_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed, seeded partition of range(n) into (train, validation) indices."""
    if not 0 < val_size < n:
        raise DataError(f"validation size must be between 1 and {n - 1}, got {val_size}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[val_size:].sort().values, perm[:val_size].sort().values


def load_train_val(
    dataset: str,
    *,
    data_dir: Path | str | None = None,
    val_size: int = 5000,
    split_seed: int = 0,
    train_subset: int | None = None,
    device: torch.device | str = "cpu",
    download: bool = False,
) -> TrainVal:
    """Training and validation splits, carved from the training set with a fixed seed.

    ``train_subset`` keeps a seeded random subset of the training part (for quick runs); the
    validation split does not depend on it.
    """
    info = dataset_info(dataset)
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    full = _as_split(_torchvision_split(info, root, train=True, download=download))
    train_idx, val_idx = split_indices(len(full), val_size=val_size, seed=split_seed)
    if train_subset is not None:
        if not 0 < train_subset <= len(train_idx):
            raise DataError(
                f"--train-subset must be between 1 and {len(train_idx)}, got {train_subset}"
            )
        keep = torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(split_seed))
        train_idx = train_idx[keep[:train_subset].sort().values]
    train = Split(full.x[train_idx], full.y[train_idx])
    val = Split(full.x[val_idx], full.y[val_idx])
    return TrainVal(info, train.to(device), val.to(device), digest=_digest(train, val))


def load_test(
    dataset: str,
    *,
    data_dir: Path | str | None = None,
    device: torch.device | str = "cpu",
    download: bool = False,
) -> Split:
    """The held-out test split: for reporting final numbers only, never for selection."""
    info = dataset_info(dataset)
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    return _as_split(_torchvision_split(info, root, train=False, download=download)).to(device)
