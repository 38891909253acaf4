"""Shared test helpers: random specs of every block kind, synthetic IDX data sets."""

from __future__ import annotations

import random
import struct
import sys
from pathlib import Path

import numpy as np

from budgetnas.space.blocks import MBConv, SepConv, SqueezeExcite, StridedConv
from budgetnas.space.spec import ArchSpec, Conv, Head, Pool, Residual, SpecError, Transition


def _conv(rng: random.Random, *, same: bool = False) -> Conv:
    k = rng.choice([1, 3, 3, 5])
    return Conv(
        out=rng.randint(1, 24),
        k=k,
        pad=k // 2 if same else rng.randint(0, k // 2),
        bias=rng.random() < 0.5,
        bn=rng.random() < 0.7,
        act=rng.choice(["relu", "gelu", "none"]),
        order=rng.choice(["bn_act", "act_bn"]),
        dropout=rng.choice([0.0, 0.0, 0.1]),
    )


def random_spec(rng: random.Random) -> ArchSpec:
    """A valid spec drawn from all block kinds and head kinds (retries invalid draws)."""
    while True:
        blocks = []
        channels = 1
        for _ in range(rng.randint(1, 7)):
            kind = rng.choice(
                [
                    "conv",
                    "conv",
                    "pool",
                    "transition",
                    "residual",
                    "sepconv",
                    "mbconv",
                    "se",
                    "strided",
                ]
            )
            if kind == "conv":
                blocks.append(_conv(rng))
            elif kind == "pool":
                blocks.append(Pool(ceil=rng.random() < 0.3))
            elif kind == "transition":
                blocks.append(
                    Transition(
                        rng.randint(1, 16),
                        pool_first=rng.random() < 0.5,
                        bias=rng.random() < 0.5,
                        bn=rng.random() < 0.5,
                        act=rng.choice(["relu", "none"]),
                    )
                )
            elif kind == "sepconv":
                k = rng.choice([1, 3, 5])
                blocks.append(SepConv(rng.randint(1, 24), k=k, pad=rng.randint(0, k // 2)))
            elif kind == "mbconv":
                out = channels if rng.random() < 0.5 else rng.randint(1, 16)
                blocks.append(
                    MBConv(
                        out, k=rng.choice([1, 3, 5]), expand=rng.randint(1, 4), skip=out == channels
                    )
                )
            elif kind == "se":
                blocks.append(SqueezeExcite(reduction=rng.choice([1, 2, 4, 8])))
            elif kind == "strided":
                blocks.append(StridedConv(rng.randint(1, 16), k=rng.choice([1, 3, 5])))
            else:
                body = tuple(_conv(rng, same=True) for _ in range(rng.randint(1, 2)))
                proj = rng.random() < 0.7 or body[-1].out != channels
                blocks.append(Residual(body, proj=proj, bias=rng.random() < 0.5))
            channels = getattr(blocks[-1], "out", channels)
        if rng.random() < 0.5:
            k = rng.choice([1, 3])
            head = Head(kind="conv_gap", k=k, pad=rng.randint(0, k // 2), bias=rng.random() < 0.5)
        else:
            head = Head(
                kind="fc",
                pool_to=rng.choice([1, 1, 2, 3]),
                hidden=tuple(rng.randint(4, 32) for _ in range(rng.randint(0, 2))),
                bias=rng.random() < 0.8,
                dropout=rng.choice([0.0, 0.2]),
            )
        try:
            return ArchSpec(
                blocks=tuple(blocks), head=head, num_classes=rng.choice([10, 10, 2, 47])
            )
        except SpecError:
            continue


# ---- synthetic data in torchvision's IDX layout -------------------------------------------


def synthetic_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n 28x28 uint8 images; the class (0-9) is a local texture a small CNN with global pooling
    can learn in a few epochs: stripes of one of five orientations, with period 2 or 4, in a
    random 14x14 window over noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    images = (rng.random((n, 28, 28)) * 40).astype(np.uint8)
    r, c = np.mgrid[0:14, 0:14]
    patterns = []
    for label in range(10):
        period = 2 if label < 5 else 4
        phase = [r, c, r + c, r - c, (r // period) + (c // period)][label % 5]
        if label % 5 == 4:
            patterns.append((phase % 2) == 0)
        else:
            patterns.append((phase % period) < period // 2)
    for i, label in enumerate(labels):
        y, x = rng.integers(0, 15, size=2)
        window = images[i, y : y + 14, x : x + 14]
        window[patterns[label]] = 255
    return images, labels


def write_idx(path: Path, array: np.ndarray) -> None:
    magic = 0x0800 | array.ndim  # unsigned bytes, ndim dimensions
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_synthetic_mnist(root: Path, *, n_train: int = 1200, n_test: int = 300) -> Path:
    """Write MNIST/raw/* under root with synthetic, learnable images; returns root."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n, seed in (("train", n_train, 1), ("t10k", n_test, 2)):
        images, labels = synthetic_images(n, seed)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return root


def cli_error(result) -> str:
    """The one ``error: ...`` line of a failed CLI run (exit code 1, no traceback)."""
    assert result.exit_code == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    return lines[0]


# ---- quick searches: one place for the small configs and command lines tests use ---------

# no final verification unless a test asks for it (--verify-seeds): it trains the front again
# one trial process (the CPU's default is one per core): tests of several set --workers
# fp32 (auto is bf16 on a CPU with native bf16): the same results on every machine for the
# tests that use these; the bf16 path has its own (tests/trainers/test_precision.py)
QUICK = {
    "train_subset": 300,
    "val_size": 100,
    "batch_size": 50,
    "epochs": 1,
    "verify_seeds": 0,
    "workers": 1,
    "precision": "fp32",
}


def quick_config(root: Path, out: Path, **overrides):
    """A search config small enough for a CPU test (synthetic or real data at ``root``):
    cap 5K, 4 trials of 1 epoch on 300 images, batch 50, no pruning, no final verification,
    one process, on the CPU.
    ``overrides`` are search options as ``budgetnas search`` takes them (``caps`` too)."""
    from budgetnas.search.study.options import new_config

    options = {"trials": 4, "pruner": "none", "device": "cpu", **QUICK, **overrides}
    caps = tuple(options.pop("caps", (5000,)))
    return new_config(out=out, caps=caps, data_dir=root, **options)


def search_args(root: Path, out: Path, *extra: str, budget: str = "5k") -> list[str]:
    """``budgetnas search`` arguments for a quick CPU search; ``extra`` adds or overrides."""
    quick: list[str] = []
    for name, value in QUICK.items():
        option = "--" + name.replace("_", "-")
        if option not in extra:
            quick += [option, str(value)]
    return [
        "search",
        "--budget",
        budget,
        "--data-dir",
        str(root),
        "--out",
        str(out),
        "--device",
        "cpu",
        *quick,
        *extra,
    ]


# Longer searches for tests where several processes must overlap in time (one rung: their
# trial counts are of candidates; rungs have their own multi-process tests).
SHARED_SEARCH = (
    "--rungs",
    "1",
    "--epochs",
    "3",
    "--train-subset",
    "600",
    "--val-size",
    "100",
    "--batch-size",
    "30",
)


def cli_module(*args: str) -> list[str]:
    """The command line running the CLI in a fresh interpreter."""
    return [sys.executable, "-m", "budgetnas.search.cli", *args]


# ---- a user's own images: small data sets made on the fly -------------------------------------


def shapes_arrays(n_per_class: int = 30, *, size: int = 32, classes: int = 5, seed: int = 0):
    """(x uint8 (N, size, size, 3), y): colour images of ``classes`` learnable patterns (a
    filled square, a ring, stripes two ways, a cross) in random colours over noise."""
    rng = np.random.default_rng(seed)
    r, c = np.mgrid[0:size, 0:size]
    mid = size / 2
    masks = [
        (abs(r - mid) < size / 4) & (abs(c - mid) < size / 4),
        (abs(np.hypot(r - mid, c - mid) - size / 3) < 2),
        (r // 3) % 2 == 0,
        (c // 3) % 2 == 0,
        (abs(r - mid) < 2) | (abs(c - mid) < 2),
    ][:classes]
    xs, ys = [], []
    for label, mask in enumerate(masks):
        for _ in range(n_per_class):
            img = (rng.random((size, size, 3)) * 60).astype(np.uint8)
            img[mask] = rng.integers(120, 256, size=3)
            xs.append(img)
            ys.append(label)
    return np.stack(xs), np.array(ys, dtype=np.int64)


def write_image_folder(root: Path, x: np.ndarray, y: np.ndarray, names=None) -> Path:
    """``root/<class>/<index>.png`` for images (N, H, W[, C]) uint8; returns root."""
    from PIL import Image

    for i, (img, label) in enumerate(zip(x, y, strict=True)):
        folder = root / (names[label] if names else f"class{label}")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"{i:06d}.png")
    return root
