"""What every source hands back: the arrays, the one-line error, the label checks, resizing."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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


def shape_text(x: np.ndarray) -> str:
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
