"""A user's own images, and torchvision's other small data sets, as uint8 arrays.

``read_source(kind, path, resize=...)`` returns every image of a data set, decoded once, as
uint8 (N, C, H, W) with int64 labels, for the training part and (when the data holds one) the
test part:

- ``folder``: an image-classification folder in torchvision's ``ImageFolder`` layout, one
  sub-folder per class (``DATA/cat/001.png``), or ``DATA/train/<class>/...`` and
  ``DATA/test/<class>/...`` for a given test split;
- ``npz``: a NumPy ``.npz`` file with ``x`` (uint8, N x H x W or N x H x W x C) and ``y``
  (integer labels 0..K-1), optionally ``x_test`` and ``y_test``;
- ``cifar10``, ``svhn``, ``emnist``: torchvision's classes, read from ``--data-dir`` when
  they are on disk.

Anything wrong with the data is a ``DataError`` with one line that names the file or the
key and says what to do; nothing is read half.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from budgetnas.trainers.sources.base import (
    MAX_CLASSES,
    Arrays,
    SourceError,
    check_labels,
    label_count,
    resize_images,
)
from budgetnas.trainers.sources.folder import IMAGE_SUFFIXES, read_folder
from budgetnas.trainers.sources.npz import read_npz

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_CLASSES",
    "TORCHVISION_OTHERS",
    "Arrays",
    "SourceError",
    "check_labels",
    "label_count",
    "read_folder",
    "read_npz",
    "read_source",
    "read_torchvision",
    "resize_images",
    "signature",
]

TORCHVISION_OTHERS = {  # name -> (torchvision class, how a split is asked for)
    "cifar10": ("CIFAR10", "train"),
    "svhn": ("SVHN", "split"),
    "emnist": ("EMNIST", "train"),  # the "balanced" split: 47 classes
}
# Sets whose files hold every image transposed (EMNIST's IDX files are written column by
# column; torchvision reads them as they are): read upright, as a user's own images are.
TRANSPOSED = ("emnist",)


def read_torchvision(name: str, root: Path, *, download: bool = False) -> Arrays:
    """CIFAR-10, SVHN or EMNIST (balanced) from ``root`` in torchvision's layout; every image
    upright (``TRANSPOSED``)."""
    import torchvision.datasets as tvd

    cls_name, how = TORCHVISION_OTHERS[name]
    cls = getattr(tvd, cls_name)

    def part(train: bool):
        kwargs = {"split": "train" if train else "test"} if how == "split" else {"train": train}
        if name == "emnist":
            kwargs["split"] = "balanced"
        try:
            return cls(root=str(root), download=download, **kwargs)
        except Exception as err:  # missing files, scipy missing for SVHN, ...
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            hint = "" if download else " (or pass --download on a machine that is online)"
            raise SourceError(
                f"{name}: could not read it from {root} ({reason}); put torchvision's files "
                f"there or point --data-dir at their root{hint}"
            ) from None

    out, classes = [], []
    for train in (True, False):
        ds = part(train)
        classes = [str(c) for c in getattr(ds, "classes", [])]
        x = np.asarray(ds.data)
        if x.ndim == 3:
            x = x[:, None]
        elif x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
            x = x.transpose(0, 3, 1, 2)
        if name in TRANSPOSED:
            x = x.transpose(0, 1, 3, 2)
        labels = getattr(ds, "targets", None)
        if labels is None:
            labels = ds.labels
        out.append((np.ascontiguousarray(x, dtype=np.uint8), np.asarray(labels, dtype=np.int64)))
    (x, y), (xt, yt) = out
    if not classes:  # no class list (SVHN): the training labels say how many
        classes = [str(i) for i in range(label_count(y, name))]
    check_labels(y, len(classes), f"{name}: the training part")
    check_labels(yt, len(classes), f"{name}: the test part")
    return Arrays(x, y, xt, yt, classes)


def signature(kind: str, path: str | None) -> tuple:
    """What identifies a read: the path and, for a folder or a file, its size and times (a
    changed file is read again)."""
    if path is None:
        return (kind,)
    p = Path(path)
    if p.is_file():
        st = p.stat()
        return (kind, str(p.resolve()), st.st_size, st.st_mtime_ns)
    if p.is_dir():
        stamps = [(str(f), f.stat().st_mtime_ns) for f in sorted(p.rglob("*")) if f.is_file()]
        return (kind, str(p.resolve()), len(stamps), hash(tuple(stamps)))
    return (kind, str(p))


_CACHE: dict[tuple, Arrays] = {}


def read_source(
    kind: str,
    path: str | None,
    *,
    resize: int | None = None,
    root: str | os.PathLike | None = None,
    download: bool = False,
) -> Arrays:
    """The data set ``kind`` (folder, npz, or a torchvision name), decoded once per process."""
    key = (*signature(kind, path), resize, str(root))
    if key not in _CACHE:
        if kind == "folder":
            arrays = read_folder(Path(path), resize=resize)
        elif kind == "npz":
            arrays = read_npz(Path(path), resize=resize)
        else:
            arrays = read_torchvision(kind, Path(root), download=download)
            if resize is not None:
                arrays.x = resize_images(arrays.x, resize)
                arrays.x_test = resize_images(arrays.x_test, resize)
        _CACHE.clear()  # one data set at a time is what a process uses
        _CACHE[key] = arrays
    return _CACHE[key]
