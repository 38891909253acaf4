"""Data sets as uint8 tensors on the device, split once into train / validation / test.

The images are read through torchvision's dataset classes (so the on-disk layout is theirs),
then held as one uint8 tensor per split on the training device: a batch is an index slice,
with no DataLoader and no per-sample transforms. The test split is loaded only on request
(``load_test``): the search never sees it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from budgetnas.trainers.datasets import (
    DATASETS,
    DataError,
    DatasetInfo,
    dataset_info,
    default_data_dir,
)
from budgetnas.trainers.sources import (
    TORCHVISION_OTHERS,
    Arrays,
    SourceError,
    check_labels,
    read_source,
    resize_images,
)

if TYPE_CHECKING:
    from budgetnas.trainers.distill import SoftTargets


USER_KINDS = ("folder", "npz")
TEST_FRACTION = 0.1  # of a data set without a test part, held out as its test set
TEST_SEED = 0


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
    digest: str = ""  # ``splits_digest`` of both splits, as loaded ("": not computed yet)
    # a teacher's logits, one row per training image, for a recipe that distils from it
    soft: SoftTargets | None = None

    def first(self, n: int) -> TrainVal:
        """The first ``n`` training images of a fixed permutation of the training split (in
        their original order), the same validation split: nested, ``first(m)`` holds
        ``first(n)`` for ``m > n``; all of it for ``n >= len(train)``."""
        if n >= len(self.train):
            return self
        gen = torch.Generator().manual_seed(SUBSET_SEED)
        keep = torch.randperm(len(self.train), generator=gen)[:n].sort().values
        keep = keep.to(self.train.x.device)
        soft = None if self.soft is None else self.soft.take(keep)
        return TrainVal(
            self.info, Split(self.train.x[keep], self.train.y[keep]), self.val, soft=soft
        )

    def data_digest(self) -> str:
        """``splits_digest(train, val)``: exactly the images and labels trained and validated
        on, in their order (the data set, its split and a subset in one value), computed once.
        A study stores it to refuse other data; the results cache keys trainings by it."""
        if not self.digest:
            self.digest = splits_digest(self.train, self.val)
        return self.digest


def splits_digest(*splits: Split) -> str:
    """sha256 of the images and labels of ``splits``, with their shapes and types, in order."""
    h = hashlib.sha256()
    for split in splits:
        for t in (split.x, split.y):
            h.update(str((tuple(t.shape), t.dtype)).encode())
            h.update(t.contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def _default_val(n: int) -> int:
    """Validation images of a data set with ``n`` training images: 10%, at most 5,000."""
    return max(1, min(5000, round(0.1 * n)))


def _pixel_stats(x: np.ndarray, rows: np.ndarray, chunk: int = 4096) -> tuple[float, float]:
    """Mean and standard deviation of ``x[rows]``'s pixels in [0, 1], in chunks (no float copy
    of the whole set)."""
    total = squares = 0.0
    count = 0
    for i in range(0, len(rows), chunk):
        part = x[rows[i : i + chunk]].astype(np.float64) / 255
        total += float(part.sum())
        squares += float(np.square(part).sum())
        count += part.size
    mean = total / count
    return mean, max(0.0, squares / count - mean * mean) ** 0.5


@dataclass(frozen=True)
class DataConfig:
    """Which data a search trains and selects on: the data set and its train/validation split.

    ``dataset``: MNIST, Fashion-MNIST or KMNIST (read as IDX files, as torchvision lays them
    out), torchvision's CIFAR-10, SVHN or EMNIST (balanced) when on disk, or a user's own
    images: ``folder`` or ``npz`` at ``path`` (``trainers.sources``). Channels, size, classes
    and normalisation come from the data; for data without a test part, a fixed, seeded 10% of
    it is held out as the test set (``test_note`` says so). ``resize`` scales every image of
    any of them (the MNIST family keeps its constant normalisation).

    ``data_dir``, ``path`` and ``download`` say where the files are and how to get them; they
    do not change what is loaded (the data digest checks that), so they are not part of
    ``fingerprint()``.
    """

    dataset: str = "mnist"
    val_size: int | None = None  # default: 5,000 for the MNIST family, else 10% of training
    split_seed: int = 0
    train_subset: int | None = None
    data_dir: str | None = None  # default: $BUDGETNAS_DATA, else ~/.cache/budgetnas/data
    download: bool = False
    path: str | None = None  # the folder or .npz of dataset "folder" / "npz"
    resize: int | None = None  # scale every image to resize x resize

    def __post_init__(self) -> None:
        if self.path is not None and self.dataset in (None, "mnist", ""):
            kind = "npz" if str(self.path).endswith(".npz") else "folder"
            object.__setattr__(self, "dataset", kind)
        name = str(self.dataset).lower().replace("_", "-")
        if name in USER_KINDS or name in TORCHVISION_OTHERS:
            object.__setattr__(self, "dataset", name)
        else:
            object.__setattr__(self, "dataset", dataset_info(self.dataset).name)
        if name in USER_KINDS and self.path is None:
            raise DataError(f"dataset {name} needs --data PATH (a folder or an .npz file)")
        if self.path is not None and name not in USER_KINDS:
            raise DataError("--data is for your own images; with it, leave --dataset out")
        if self.val_size is not None and self.val_size < 1:
            raise DataError(f"--val-size must be at least 1, got {self.val_size}")
        if self.train_subset is not None and self.train_subset < 1:
            raise DataError(f"--train-subset must be at least 1, got {self.train_subset}")
        if self.resize is not None and not 4 <= self.resize <= 1024:
            raise DataError(f"--resize must be between 4 and 1024 pixels, got {self.resize}")

    @property
    def builtin(self) -> bool:
        """The MNIST family: read as IDX files, constant normalisation."""
        return self.dataset in DATASETS

    def arrays(self) -> Arrays:
        """The whole data set as read (not for the MNIST family)."""
        try:
            return read_source(
                self.dataset,
                self.path,
                resize=self.resize,
                root=self.data_dir or default_data_dir(),
                download=self.download,
            )
        except SourceError as err:
            raise DataError(str(err)) from None

    def _parts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(train x, train y, test x, test y): the data's own test part, else a fixed, seeded
        ``TEST_FRACTION`` of it held out."""
        a = self.arrays()
        if a.x_test is not None:
            return a.x, a.y, a.x_test, a.y_test
        if a.held is not None:
            return a.held
        n = len(a.y)
        held = max(1, round(TEST_FRACTION * n))
        if n - held < 2:
            raise DataError(f"{self.path} holds {n} images: too few to hold a test set out")
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(TEST_SEED)).numpy()
        test, train = np.sort(perm[:held]), np.sort(perm[held:])
        a.held = a.x[train], a.y[train], a.x[test], a.y[test]
        return a.held

    @property
    def test_note(self) -> str | None:
        """How the images were read (the scale of 16-bit or float images, what was not read)
        and how the test set is chosen, when the data holds none."""
        if self.builtin:
            return None
        a = self.arrays()
        notes = [a.note] if a.note else []
        if a.x_test is None:
            _, _, xt, _ = self._parts()
            where = self.path or self.dataset
            notes.append(
                f"{where} has no test split: {len(xt):,} of its images ({TEST_FRACTION:.0%}, "
                f"drawn with seed {TEST_SEED}) are held out as the test set; the search never "
                "reads them"
            )
        return "; ".join(notes) or None

    @cached_property
    def info(self) -> DatasetInfo:
        """Channels, size, classes and training size from the data; the normalisation (one
        mean and standard deviation over every pixel) from its training split, the images
        the validation split leaves."""
        if self.builtin:  # the constant normalisation holds for scaled images too
            info = dataset_info(self.dataset)
            return info if self.resize is None else replace(info, image_size=self.resize)
        x, y, _, _ = self._parts()
        val = self.val_size if self.val_size is not None else _default_val(len(y))
        train_idx, _ = split_indices(len(y), val_size=val, seed=self.split_seed)
        mean, std = _pixel_stats(x, train_idx.numpy())
        return DatasetInfo(
            name=Path(self.path).name if self.path else self.dataset,
            torchvision_class="",
            mean=round(mean, 4),
            std=round(std, 4) or 1.0,
            num_classes=len(self.arrays().classes),
            in_channels=int(x.shape[1]),
            image_size=int(x.shape[2]),
            train_size=len(y),
        )

    @property
    def val_images(self) -> int:
        """Validation images carved from the training part."""
        if self.val_size is not None:
            return self.val_size
        if self.builtin:
            return 5000
        return _default_val(self.info.train_size)

    @property
    def train_images(self) -> int:
        """Images in the training split as loaded (a subset, or all but validation)."""
        return self.train_subset or self.info.train_size - self.val_images

    def fingerprint(self) -> dict[str, Any]:
        """What defines the loaded splits (not where they are read from)."""
        out = {
            "dataset": self.dataset,
            "val_size": self.val_images,
            "split_seed": self.split_seed,
            "train_subset": self.train_subset,
        }
        if not self.builtin or self.resize is not None:  # a run made without it: no key
            out["resize"] = self.resize
        return out

    def load(self, device: torch.device | str = "cpu") -> TrainVal:
        if not self.builtin:
            x, y, _, _ = self._parts()
            full = Split(torch.from_numpy(x), torch.from_numpy(y))
            return _carve(
                self.info, full, self.val_images, self.split_seed, self.train_subset, device
            )
        return load_train_val(
            self.dataset,
            data_dir=self.data_dir,
            val_size=self.val_images,
            split_seed=self.split_seed,
            train_subset=self.train_subset,
            device=device,
            download=self.download,
            resize=self.resize,
        )

    def load_test(self, device: torch.device | str = "cpu") -> Split:
        """The held-out test split: for reporting final numbers only, never for selection."""
        if not self.builtin:
            _, _, xt, yt = self._parts()
            return Split(torch.from_numpy(xt), torch.from_numpy(yt)).to(device)
        return load_test(self.dataset, data_dir=self.data_dir, device=device, resize=self.resize)


def _as_split(ds, info: DatasetInfo, part: str, resize: int | None = None) -> Split:
    x = ds.data
    if not isinstance(x, torch.Tensor):  # pragma: no cover - all three classes give tensors
        x = torch.as_tensor(x)
    y = torch.as_tensor(ds.targets, dtype=torch.int64)
    try:  # a damaged label file: one line now, not a failure in the middle of training
        check_labels(y.numpy(), info.num_classes, f"{info.name}: the {part} part")
    except SourceError as err:
        raise DataError(f"{err}; its label file is damaged: write it again") from None
    x = x.to(torch.uint8).unsqueeze(1).contiguous()
    if resize is not None:
        x = torch.from_numpy(resize_images(x.numpy(), resize))
    return Split(x, y)


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
    resize: int | None = None,
) -> TrainVal:
    """Training and validation splits, carved from the training set with a fixed seed.

    ``train_subset`` keeps a seeded random subset of the training part (for quick runs); the
    validation split does not depend on it. ``resize`` scales every image to resize x resize.
    """
    info = dataset_info(dataset)
    if resize is not None:
        info = replace(info, image_size=resize)
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    full = _torchvision_split(info, root, train=True, download=download)
    full = _as_split(full, info, "training", resize)
    return _carve(info, full, val_size, split_seed, train_subset, device)


def _carve(
    info: DatasetInfo,
    full: Split,
    val_size: int,
    split_seed: int,
    train_subset: int | None,
    device: torch.device | str,
) -> TrainVal:
    """Training and validation splits of ``full``, carved with a fixed seed."""
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
    return TrainVal(info, train.to(device), val.to(device), digest=splits_digest(train, val))


def load_test(
    dataset: str,
    *,
    data_dir: Path | str | None = None,
    device: torch.device | str = "cpu",
    download: bool = False,
    resize: int | None = None,
) -> Split:
    """The held-out test split: for reporting final numbers only, never for selection."""
    info = dataset_info(dataset)
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    split = _torchvision_split(info, root, train=False, download=download)
    split = _as_split(split, info, "test", resize)
    return split.to(device)
