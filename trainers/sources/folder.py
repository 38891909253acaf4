"""A folder of images in torchvision's ImageFolder layout (one sub-folder per class, or train/ and
test/ above them), decoded once: gray or colour by what the files hold, 16-bit images by the bit
depth their values use."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from budgetnas.trainers.sources.base import (
    Arrays,
    SourceError,
    shape_text,
)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm")


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
            f"test images are {shape_text(xt)}, training images {shape_text(x)}; pass --resize N"
        )
    return Arrays(x, y, xt, yt, classes, note)
