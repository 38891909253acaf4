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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm")
TORCHVISION_OTHERS = {  # name -> (torchvision class, how a split is asked for)
    "cifar10": ("CIFAR10", "train"),
    "svhn": ("SVHN", "split"),
    "emnist": ("EMNIST", "train"),  # the "balanced" split: 47 classes
}
# Sets whose files hold every image transposed (EMNIST's IDX files are written column by
# column; torchvision reads them as they are): read upright, as a user's own images are.
TRANSPOSED = ("emnist",)


class SourceError(ValueError):
    """The data cannot be used as it is; the message says why and what to do."""


@dataclass
class Arrays:
    """A data set as read: training images and labels, the test part when the data has one."""

    x: np.ndarray  # (N, C, H, W) uint8
    y: np.ndarray  # (N,) int64
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    classes: list[str]
    note: str = ""  # what was read and what was left (a val/ folder next to train/)
    held: tuple | None = None  # (train x, train y, test x, test y) once a test part is held out


def _resize(image, size: int):
    from PIL import Image

    return image.resize((size, size), Image.BILINEAR)


def _scan_folder(root: Path) -> list[tuple[str, list[Path]]]:
    classes = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    return [
        (
            d.name,
            sorted(
                f
                for f in d.rglob("*")
                if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".")
            ),
        )
        for d in classes
    ]


# Modes of more than 8 bits: 16-bit PNG and TIFF open as I;16, 16-bit PGM as I (PIL scales a
# PGM's own maximum value to 65535), float TIFF as F.
WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
FLOAT_MODES = ("F",)
GRAY_MODES = ("1", "L", "LA", *WIDE_MODES, *FLOAT_MODES)
DEPTHS = (8, 10, 12, 14, 16)  # the bit depths 16-bit images are read at


def _is_gray(im) -> bool:
    """Whether ``im`` holds one channel: a gray mode, or a palette (a GIF's) whose colours in
    use are all gray."""
    if im.mode in GRAY_MODES:
        return True
    if im.mode not in ("P", "PA"):
        return False
    palette = im.getpalette()
    if not palette:
        return False
    rgb = np.asarray(palette, dtype=np.int64).reshape(-1, 3)
    used = np.unique(np.asarray(im.getchannel(0) if im.mode == "PA" else im))
    used = used[used < len(rgb)]
    return bool((rgb[used] == rgb[used][:, :1]).all())


def _decode(files: list[Path]) -> list[tuple[Path, object]]:
    """Each file opened and decoded by PIL: (file, image)."""
    from PIL import Image, UnidentifiedImageError

    images = []
    for f in files:
        try:
            with Image.open(f) as im:
                im.load()
                images.append((f, im.copy()))
        except (UnidentifiedImageError, OSError, ValueError) as err:
            raise SourceError(
                f"cannot read {f} as an image ({type(err).__name__}: {err}); remove it or "
                "replace it with a readable file"
            ) from None
    return images


def _extremes(images: list[tuple[Path, object]]) -> tuple[float, Path, float, Path]:
    """(lowest value, its file, highest value, its file) over ``images``."""
    lo = hi = None
    for f, im in images:
        a = np.asarray(im)
        if not np.isfinite(a).all():
            raise SourceError(
                f"{f} holds values that are not numbers (NaN or infinite); save the images as "
                "8-bit, or as floats in 0-1"
            )
        low, high = a.min().item(), a.max().item()
        if lo is None or low < lo[0]:
            lo = (low, f)
        if hi is None or high > hi[0]:
            hi = (high, f)
    return lo[0], lo[1], hi[0], hi[1]


def _full_scales(images: list[tuple[Path, object]]) -> tuple[dict[str, float], list[str]]:
    """The value read as 255 for each mode of more than 8 bits, one for the whole data set
    (its training and test parts together, so both share one scale), and a note for each
    scale that is not the mode's plain one.

    16-bit images are read at the smallest of ``DEPTHS`` that holds the data set's largest
    value: 8-bit values saved as 16-bit files (common) keep their levels instead of being read
    as fractions of 65535, which crushes them to 0 and 1; 10- to 14-bit data (sensors) fill
    0-255. Float images are read as fractions of 1 when every value lies in 0-1, else on the
    0-255 scale. Values outside both are one line naming a file: they are not clipped."""
    scales: dict[str, float] = {}
    notes = []
    wide = [(f, im) for f, im in images if im.mode in WIDE_MODES]
    if wide:
        lo, f_lo, hi, f_hi = _extremes(wide)
        if lo < 0 or hi > 65535:
            f, what = (f_lo, f"down to {lo}") if lo < 0 else (f_hi, f"up to {hi}")
            raise SourceError(
                f"{f} holds values {what}, outside 0-65535; save the images as 8- or 16-bit"
            )
        depth = next(d for d in DEPTHS if hi < 2**d)
        full = 2**depth - 1
        scales.update(dict.fromkeys(WIDE_MODES, float(full)))
        if depth == 8:
            notes.append(f"16-bit images with values up to {hi}: read as 8-bit values")
        elif depth < 16:
            notes.append(
                f"16-bit images with values up to {hi}: read as {depth}-bit values "
                f"(0-{full} scaled to 0-255)"
            )
    floats = [(f, im) for f, im in images if im.mode in FLOAT_MODES]
    if floats:
        lo, f_lo, hi, f_hi = _extremes(floats)
        if lo < 0 or hi > 255:
            f, what = (f_lo, f"down to {lo:g}") if lo < 0 else (f_hi, f"up to {hi:g}")
            raise SourceError(
                f"{f} holds values {what}; float images are read in 0-1 or in 0-255: save "
                "them as 8-bit, or as floats in 0-1"
            )
        full = 1.0 if hi <= 1 else 255.0
        scales.update(dict.fromkeys(FLOAT_MODES, full))
        how = "fractions of 1" if full == 1 else "0-255 values"
        notes.append(f"float images with values from {lo:g} to {hi:g}: read as {how}")
    return scales, notes


def _to_arrays(
    images: list[tuple[Path, object]],
    root: Path,
    resize: int | None,
    *,
    mode: str,
    scales: dict[str, float],
) -> np.ndarray:
    """``images`` as (N, C, H, W) uint8 in ``mode`` (L or RGB); a mode of more than 8 bits
    scaled by its full scale in ``scales`` (``_full_scales``)."""
    from PIL import Image

    sizes: dict[tuple[int, int], Path] = {}
    for f, im in images:
        sizes.setdefault(im.size, f)
    if resize is None:
        if len(sizes) > 1:
            (a, fa), (b, fb) = list(sizes.items())[:2]
            raise SourceError(
                f"images in {root} differ in size: {a[0]}x{a[1]} ({fa.relative_to(root)}) and "
                f"{b[0]}x{b[1]} ({fb.relative_to(root)}); pass --resize N to scale them all "
                "to N x N"
            )
        ((w, h),) = sizes
        if w != h:
            f = next(iter(sizes.values()))
            raise SourceError(
                f"images in {root} are {w}x{h}, not square ({f.relative_to(root)}); pass "
                f"--resize N to scale them to N x N"
            )
    arrays = []
    for _, im in images:
        if im.mode in scales:  # 16-bit or float: scaled by the data set's full scale
            a = np.asarray(im, dtype=np.float64) * (255.0 / scales[im.mode])
            im = Image.fromarray(np.clip(a.round(), 0, 255).astype(np.uint8))
        im = im.convert(mode)
        if resize is not None and im.size != (resize, resize):
            im = _resize(im, resize)
        a = np.asarray(im, dtype=np.uint8)
        arrays.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
    return np.stack(arrays)


def _labelled(root: Path, what: str) -> tuple[list, np.ndarray, list[str]]:
    """The decoded images of a class-per-folder tree, their labels and the class names."""
    if not root.is_dir():
        raise SourceError(f"{what} folder {root} does not exist")
    classes = [(name, files) for name, files in _scan_folder(root) if files]
    if not classes:
        raise SourceError(
            f"{root} holds no images: put them in one folder per class "
            f"({root}/cat/001.png, {root}/dog/001.png, ...; {', '.join(IMAGE_SUFFIXES)})"
        )
    if len(classes) == 1:
        raise SourceError(
            f"{root} holds one class ({classes[0][0]}); a classifier needs at least two class "
            "folders"
        )
    files = [f for _, fs in classes for f in fs]
    labels = np.concatenate(
        [np.full(len(fs), i, dtype=np.int64) for i, (_, fs) in enumerate(classes)]
    )
    return _decode(files), labels, [name for name, _ in classes]


def read_folder(path: Path, *, resize: int | None = None) -> Arrays:
    """An ``ImageFolder`` tree; ``train/`` (and ``test/``) sub-folders when present. Every
    image of both parts is read the same way: grayscale when every image is, RGB otherwise,
    and one full scale for images of more than 8 bits (``_full_scales``), which the note
    states."""
    path = Path(path)
    if not path.is_dir():
        raise SourceError(f"data folder {path} does not exist")
    train, test = path / "train", path / "test"
    notes = []
    if train.is_dir() and ((path / "val").is_dir() or (path / "valid").is_dir()):
        notes.append(
            f"{path}/val is not read: the validation split is carved from the training "
            "images (--val-size)"
        )
    if train.is_dir():
        where = [(train, "training"), *([(test, "test")] if test.is_dir() else [])]
    else:
        where = [(path, "data")]
    parts = [_labelled(root, what) for root, what in where]
    every = [image for images, _, _ in parts for image in images]
    mode = "L" if all(_is_gray(im) for _, im in every) else "RGB"
    scales, scale_notes = _full_scales(every)
    note = "; ".join([*scale_notes, *notes])
    (images, y, classes), *rest = parts
    x = _to_arrays(images, where[0][0], resize, mode=mode, scales=scales)
    if not rest:
        return Arrays(x, y, None, None, classes, note)
    ((images, yt, test_classes),) = rest
    unknown = sorted(set(test_classes) - set(classes))
    if unknown:
        raise SourceError(
            f"{test} has class folders the training folder lacks: {', '.join(unknown)}"
        )
    xt = _to_arrays(images, test, resize, mode=mode, scales=scales)
    yt = np.array([classes.index(test_classes[i]) for i in yt], dtype=np.int64)
    if xt.shape[1:] != x.shape[1:]:
        raise SourceError(
            f"test images are {_shape(xt)}, training images {_shape(x)}; pass --resize N"
        )
    return Arrays(x, y, xt, yt, classes, note)


def _shape(x: np.ndarray) -> str:
    return f"{x.shape[1]}x{x.shape[2]}x{x.shape[3]} (channels x height x width)"


def resize_images(x: np.ndarray, size: int, chunk: int = 4096) -> np.ndarray:
    """uint8 images (N, C, H, W) scaled to (N, C, size, size): bilinear, antialiased, in
    chunks (no float copy of the whole set)."""
    import torch
    import torch.nn.functional as F

    if x.shape[2:] == (size, size):
        return x
    out = np.empty((*x.shape[:2], size, size), dtype=np.uint8)
    for i in range(0, len(x), chunk):
        t = torch.from_numpy(np.ascontiguousarray(x[i : i + chunk])).float()
        t = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True)
        out[i : i + chunk] = t.round().clamp(0, 255).to(torch.uint8).numpy()
    return out


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


MAX_CLASSES = 100_000  # the most classes a network's head takes (space.spec)


def label_count(y: np.ndarray, where: str) -> int:
    """K, for labels ``y`` that must be 0..K-1 with every class present; checked against the
    image count (every class holds an image) and ``MAX_CLASSES`` before anything is sized by
    the largest label, so a corrupt label is one line, not a class list of its size."""
    lo, hi = int(y.min()), int(y.max())
    rule = f"{where}: labels must be 0..K-1 with every class present; found"
    if lo < 0:
        raise SourceError(f"{rule} {lo} (labels {lo}..{hi})")
    if hi >= len(y):
        raise SourceError(f"{rule} label {hi}: more classes than the {len(y):,} images")
    if hi >= MAX_CLASSES:
        raise SourceError(f"{rule} label {hi}: more than {MAX_CLASSES:,} classes")
    gaps = np.setdiff1d(np.arange(hi + 1), y)
    if len(gaps):
        raise SourceError(f"{rule} no image of class {gaps[:5].tolist()} (labels {lo}..{hi})")
    return hi + 1


def check_labels(y: np.ndarray, classes: int, where: str) -> None:
    """Labels ``y`` of a data set with ``classes`` classes lie in 0..classes-1 (one line
    naming ``where`` otherwise: a label past them fails only in the middle of training)."""
    if len(y) and (y.min() < 0 or y.max() >= classes):
        bad = int(y.min() if y.min() < 0 else y.max())
        raise SourceError(f"{where} holds label {bad}, outside its {classes} classes")


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
            raise SourceError(f"{path}: x_test images are {_shape(xt)}, x images {_shape(x)}")
        if len(yt) and (yt.min() < 0 or yt.max() >= classes):
            raise SourceError(
                f"{path}: y_test holds label {int(yt.min() if yt.min() < 0 else yt.max())}, "
                f"outside the training labels 0..{classes - 1}"
            )
    return Arrays(x, y, xt, yt, [str(i) for i in range(classes)])


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
