"""The key of a training in the results cache: everything that determines its bits.

The key is the sha256 of a canonical JSON of the training's identity (``identity``): the spec,
the exact images and labels trained and validated on (their digest), the recipe with its epochs
and seed, the fidelity (epochs x images), the torch and budgetnas versions, the version of the
training code (``TRAINING``, guarded by a digest of that code, ``TRAINING_CODE``, which a test
compares) and the device kind; on a CPU also the instruction set torch uses there and torch's
intra-op thread count at training time, since both change the order in which sums are taken,
and so the bits (a trial process trains with its share of the cores, ``budgetnas verify`` with
all of them: their trainings are two entries).
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from budgetnas.search.study.processes import usable_cores
from budgetnas.space.spec import ArchSpec
from budgetnas.trainers.recipe import TrainConfig

# Of the key's identity and of an entry's file (2: a CPU's thread count and instruction set
# in every CPU key; entries of format 1 no longer match and are trained again)
FORMAT = 2


# What a training computes, for the same spec, data, recipe and versions: raised when the
# training code changes its results (2: element dropout masks from 16-bit SFC64 draws), so
# that an entry trained by earlier code is not taken for one of this code. TRAINING_CODE is
# the digest of the code it was raised for (``training_code_digest``): a test compares them,
# so a change to that code fails until this is looked at (raised, and the digest recorded).
TRAINING = 2
TRAINING_CODE = "e6914b3f7ecdb15514be69c92f6a2a51eabee9d739f636d78a35341123e0a48a"
# The modules whose code decides a training's bits for a given key: the loop, its step (and
# the CUDA graphs of it), augmentation, EMA, distillation, evaluation, the recipe's defaults,
# and how a spec becomes a network. (The data module is not among them: the key holds the
# digest of the very images trained on.)
TRAINING_SOURCES = (
    "budgetnas.trainers.train",
    "budgetnas.trainers.step",
    "budgetnas.trainers.graphs",
    "budgetnas.trainers.augment",
    "budgetnas.trainers.ema",
    "budgetnas.trainers.distill",
    "budgetnas.trainers.evaluate",
    "budgetnas.trainers.recipe",
    "budgetnas.space.build",
    "budgetnas.space.blocks",
    "budgetnas.space.dropout",
    "budgetnas.space.spec",
)


def trial_threads(workers: int) -> int:
    """torch's intra-op threads that the trainings of a search started in this process run
    with (its trials and its verification): with several trial processes, the usable cores
    shared among them (as ``helper_env`` gives each); with one, this process's own. A lookup
    of what the cache holds for the search keys by it."""
    return max(1, usable_cores() // workers) if workers > 1 else torch.get_num_threads()


def device_kind(device: torch.device | str) -> str:
    """``cpu``, or ``cuda (<device name>)``: results differ between kinds of device, not
    between two devices of one kind."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type


def _versions() -> dict[str, str]:
    from budgetnas.search.study.config import FINGERPRINT_VERSION

    try:
        package = metadata.version("budgetnas")
    except metadata.PackageNotFoundError:  # pragma: no cover - always installed here
        package = "unknown"
    return {"torch": torch.__version__, "budgetnas": package, "settings": str(FINGERPRINT_VERSION)}


def identity(
    spec: ArchSpec,
    recipe: TrainConfig,
    *,
    data: str,
    train_images: int,
    val_images: int,
    device: str,
    threads: int,
    graphs: bool | None = None,
) -> dict[str, Any]:
    """Everything that determines a training's result: the spec, the data (``data``: its
    ``TrainVal.data_digest``), the recipe (epochs and seed included), the fidelity, the
    versions of torch, budgetnas and the training code, the device kind (``device_kind``) and,
    on a CPU, its instruction set (``cpu_kind``) and torch's intra-op ``threads``: a sum over
    two threads is taken in another order than over one. On CUDA, ``graphs``: whether the step
    was captured as a CUDA graph (the same sums, launched otherwise: rounding may differ)."""
    cpu = {"cpu": cpu_kind(), "threads": threads} if device == "cpu" else {}
    if graphs is not None:
        cpu = {"graphs": graphs}
    return {
        "format": FORMAT,
        "training": TRAINING,
        "spec": spec.to_dict(),
        "data": {"digest": data, "train_images": train_images, "val_images": val_images},
        "recipe": recipe.to_dict(),
        "fidelity": {"epochs": recipe.epochs, "images": train_images},
        "seed": recipe.seed,
        **_versions(),
        "device": device,
        **cpu,
    }


def cpu_kind() -> str:
    """The instruction set torch uses on this CPU (its kernels differ per set: AVX2, AVX512)
    and whether it computes bf16 in hardware (AVX512-BF16, AMX) or emulates it."""
    from budgetnas.trainers.precision import native_bf16_cpu

    return f"{torch.backends.cpu.get_cpu_capability()}, native bf16 {native_bf16_cpu()}"


def result_key(ident: dict[str, Any]) -> str:
    """The cache key of an identity: the sha256 of its canonical JSON."""
    text = json.dumps(ident, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _canonical(node: Any) -> Any:
    """An AST as nested lists, without what does not change what the code does: positions,
    docstrings, and fields a Python version leaves empty (so the same code gives the same
    value on every supported Python)."""
    if isinstance(node, ast.AST):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
            and isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        ):
            node.body = body[1:] or [ast.Pass()]
        fields = [
            [name, _canonical(value)]
            for name, value in ast.iter_fields(node)
            if value not in (None, []) and name != "type_comment"
        ]
        return [type(node).__name__, fields]
    if isinstance(node, list):
        return [_canonical(item) for item in node]
    return repr(node)


def source_digest(sources: list[str]) -> str:
    """sha256 of what the Python ``sources`` do: their syntax trees without docstrings,
    comments or layout (``_canonical``)."""
    h = hashlib.sha256()
    for text in sources:
        h.update(json.dumps(_canonical(ast.parse(text))).encode())
    return h.hexdigest()


def training_sources() -> list[str]:
    """The source text of each module of ``TRAINING_SOURCES``; a package counts with every
    module in it (``space.blocks``: the protocol and each family's file), in name order."""
    out = []
    for name in TRAINING_SOURCES:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin is not None, name
        origin = Path(spec.origin)
        files = sorted(origin.parent.rglob("*.py")) if spec.submodule_search_locations else [origin]
        out.extend(f.read_text(encoding="utf-8") for f in files)
    return out


def training_code_digest() -> str:
    """``source_digest`` of the training code (``TRAINING_SOURCES``): what ``TRAINING_CODE``
    records for the current ``TRAINING``."""
    return source_digest(training_sources())
