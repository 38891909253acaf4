"""A NumPy ``.npz`` file with ``x`` and ``y`` (and optionally ``x_test`` and ``y_test``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from budgetnas.trainers.sources.base import (
    Arrays,
    SourceError,
    label_count,
    resize_images,
    shape_text,
)


def _npz_array(data, key: str, path: Path) -> np.ndarray:
    """``data[key]``, read now (an .npz is read lazily, key by key): a damaged or pickled
    array is a ``SourceError`` naming the file and the key."""
    try:
        return data[key]
    except Exception as err:  # a bad CRC, a truncated member, an object array, ...
        raise SourceError(
            f"{path}: cannot read {key} ({type(err).__name__}: {err}); write it again with "
            f"numpy.savez and plain (not object) arrays"
        ) from None


def _npz_images(data, key: str, path: Path, resize: int | None) -> np.ndarray:
    x = _npz_array(data, key, path)
    if x.dtype != np.uint8:
        raise SourceError(
            f"{path}: {key} must hold uint8 pixels (0-255), it holds {x.dtype}; convert with "
            f"(x * 255).round().astype('uint8') if it is in [0, 1]"
        )
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    else:
        raise SourceError(
            f"{path}: {key} must be N x H x W or N x H x W x C (C 1 or 3), it is "
            f"{' x '.join(map(str, x.shape))}"
        )
    h, w = x.shape[2:]
    if resize is not None and (h, w) != (resize, resize):
        x = resize_images(x, resize)
    elif h != w:
        raise SourceError(f"{path}: {key} images are {h}x{w}, not square; pass --resize N")
    return np.ascontiguousarray(x)


def _npz_labels(data, key: str, n: int, path: Path) -> np.ndarray:
    y = _npz_array(data, key, path)
    if y.ndim != 1 or len(y) != n or not np.issubdtype(y.dtype, np.integer):
        raise SourceError(
            f"{path}: {key} must be {n} integer labels (one per image), it is "
            f"{y.dtype} of shape {tuple(y.shape)}"
        )
    return y.astype(np.int64)


def read_npz(path: Path, *, resize: int | None = None) -> Arrays:
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"data file {path} does not exist")
    try:
        data = np.load(path, allow_pickle=False)
        keys = set(data.files)
    except Exception as err:  # not an npz, truncated, pickled objects...
        raise SourceError(f"cannot read {path} as a NumPy .npz file: {err}") from None
    missing = [k for k in ("x", "y") if k not in keys]
    if missing:
        raise SourceError(
            f"{path} lacks {' and '.join(missing)}: it needs x (uint8 images) and y (labels), "
            f"and may hold x_test and y_test; it has {', '.join(sorted(keys)) or 'nothing'}"
        )
    x = _npz_images(data, "x", path, resize)
    y = _npz_labels(data, "y", len(x), path)
    if len(y) == 0:
        raise SourceError(f"{path}: x holds no images")
    classes = label_count(y, str(path))
    if classes < 2:
        raise SourceError(f"{path}: every label is {int(y[0])}; a classifier needs two classes")
    if ("x_test" in keys) != ("y_test" in keys):
        raise SourceError(f"{path} has one of x_test and y_test; give both or neither")
    xt = yt = None
    if "x_test" in keys:
        xt = _npz_images(data, "x_test", path, resize)
        yt = _npz_labels(data, "y_test", len(xt), path)
        if xt.shape[1:] != x.shape[1:]:
            raise SourceError(
                f"{path}: x_test images are {shape_text(xt)}, x images {shape_text(x)}"
            )
        if len(yt) and (yt.min() < 0 or yt.max() >= classes):
            raise SourceError(
                f"{path}: y_test holds label {int(yt.min() if yt.min() < 0 else yt.max())}, "
                f"outside the training labels 0..{classes - 1}"
            )
    return Arrays(x, y, xt, yt, [str(i) for i in range(classes)])
