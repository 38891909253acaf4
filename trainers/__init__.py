"""Data on the device, batched augmentation, the recipe, and the training loop."""

from budgetnas.trainers.data import DataConfig, Split, TrainVal, load_test, load_train_val
from budgetnas.trainers.datasets import (
    DATASETS,
    DataError,
    DatasetInfo,
    dataset_info,
    default_data_dir,
)
from budgetnas.trainers.evaluate import device_name, evaluate, resolve_device
from budgetnas.trainers.recipe import (
    NO_AUGMENT,
    ONE_EPOCH_DEFAULTS,
    AugmentConfig,
    ConfigError,
    TrainConfig,
    default_recipe,
)

__all__ = [
    "DATASETS",
    "NO_AUGMENT",
    "ONE_EPOCH_DEFAULTS",
    "AugmentConfig",
    "ConfigError",
    "DataConfig",
    "DataError",
    "DatasetInfo",
    "Split",
    "TrainConfig",
    "TrainResult",
    "TrainVal",
    "TrainingError",
    "dataset_info",
    "default_data_dir",
    "default_recipe",
    "device_name",
    "evaluate",
    "init_model",
    "load_test",
    "load_train_val",
    "random_affine",
    "resolve_device",
    "seeded",
]  # the training loop itself: budgetnas.trainers.train.train

_TRAINING = {
    "random_affine": "budgetnas.trainers.augment",
    "TrainingError": "budgetnas.trainers.train",
    "TrainResult": "budgetnas.trainers.train",
    "init_model": "budgetnas.trainers.train",
    "seeded": "budgetnas.trainers.train",
}


def __getattr__(name: str):
    """The training loop is imported on first use, so that reading a run's data, recipe and
    results (reports, export) does not import it."""
    if name in _TRAINING:
        import importlib

        return getattr(importlib.import_module(_TRAINING[name]), name)
    raise AttributeError(f"module 'budgetnas.trainers' has no attribute {name!r}")
