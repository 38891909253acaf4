"""Data on the device, batched augmentation, and the training loop."""

from budgetnas.trainers.augment import NO_AUGMENT, AugmentConfig, random_affine
from budgetnas.trainers.data import (
    DATASETS,
    DataError,
    DatasetInfo,
    Split,
    TrainVal,
    dataset_info,
    default_data_dir,
    load_test,
    load_train_val,
)
from budgetnas.trainers.train import (
    ConfigError,
    TrainConfig,
    TrainingError,
    TrainResult,
    device_name,
    evaluate,
    init_model,
    resolve_device,
    train,
)

__all__ = [
    "DATASETS",
    "NO_AUGMENT",
    "AugmentConfig",
    "ConfigError",
    "DataError",
    "DatasetInfo",
    "Split",
    "TrainConfig",
    "TrainResult",
    "TrainVal",
    "TrainingError",
    "dataset_info",
    "default_data_dir",
    "device_name",
    "evaluate",
    "init_model",
    "load_test",
    "load_train_val",
    "random_affine",
    "resolve_device",
    "train",
]
