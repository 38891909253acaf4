"""A results cache shared by every search on the machine: a finished training and its weights,
keyed by everything that determines it, so that the same training (a reference network at a
rung, a verify seed, a candidate met again) is not run again by the next search.

The key is the sha256 of a canonical JSON of the training's identity (``identity``): the spec,
the exact images and labels trained and validated on (their digest), the recipe with its epochs
and seed, the fidelity (epochs x images), the torch and budgetnas versions, the version of the
training code (``TRAINING``) and the device kind; on a CPU also the instruction set torch uses
there and torch's intra-op thread count at training time, since both change the order in which
sums are taken, and so the bits (a trial process trains with its share of the cores, ``budgetnas
verify`` with all of them: their trainings are two entries).
An entry is one file, ``<root>/<key[:2]>/<key>.pt``: a header line (the key, the result, a
checksum) and the weights. It is written to a temporary file and moved into place, so a reader
never sees half an entry and two processes writing the same key both leave a whole one (the
last wins); a temporary file a killed writer left is no entry (``search.cache_admin`` removes it
once it is stale). An entry that cannot be read, whose checksum or key does not match, is
ignored: the training runs again and replaces it. Pruned trainings are never written. Reading
an entry marks it as used (its modification time), so that trimming by age keeps what is used.

An entry holds, to the bit, what this training computes here: the cache changes no result, so
it is no part of a search's settings or fingerprint. It is on by default for the command line,
in ``$XDG_CACHE_HOME/budgetnas/results`` (else ``~/.cache/budgetnas/results``); ``--cache DIR``
or ``$BUDGETNAS_CACHE`` move it, ``--no-cache`` or ``BUDGETNAS_CACHE=off`` turn it off.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import importlib.util
import io
import json
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from budgetnas.search.config import usable_cores
from budgetnas.search.errors import SearchError
from budgetnas.space.spec import ArchSpec
from budgetnas.trainers.data import TrainVal
from budgetnas.trainers.recipe import TrainConfig
from budgetnas.trainers.train import TrainResult, init_model, train

__all__ = [
    "CACHE_ENV",
    "Entry",
    "ResultCache",
    "cached_train",
    "cpu_kind",
    "default_cache_dir",
    "device_kind",
    "helper_env",
    "identity",
    "open_cache",
    "result_key",
    "trial_threads",
]

CACHE_ENV = "BUDGETNAS_CACHE"  # a folder, or off / none / 0 for no cache
OFF = ("", "off", "none", "no", "0", "false")
# Of the key's identity and of an entry's file (2: a CPU's thread count and instruction set
# in every CPU key; entries of format 1 no longer match and are trained again)
FORMAT = 2
MAGIC = b"budgetnas-result 1\n"
# What a training computes, for the same spec, data, recipe and versions: raised when the
# training code changes its results (2: element dropout masks from 16-bit SFC64 draws), so
# that an entry trained by earlier code is not taken for one of this code. TRAINING_CODE is
# the digest of the code it was raised for (``training_code_digest``): a test compares them,
# so a change to that code fails until this is looked at (raised, and the digest recorded).
TRAINING = 2
TRAINING_CODE = "4bcf9b1ff61e9130d4e728c5e0c86ba72772efaafffc53c20cd8b707100d925d"
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


def default_cache_dir() -> Path | None:
    """``$BUDGETNAS_CACHE`` (None when it says off), else ``$XDG_CACHE_HOME/budgetnas/results``,
    else ``~/.cache/budgetnas/results``."""
    env = os.environ.get(CACHE_ENV)
    if env is not None:
        return None if env.strip().lower() in OFF else Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "budgetnas" / "results"


def open_cache(folder: Path | str | None = None, *, enabled: bool = True) -> ResultCache | None:
    """The cache of ``--cache DIR`` / ``--no-cache`` (neither: ``default_cache_dir()``);
    None when it is off."""
    if not enabled:
        if folder is not None:
            raise SearchError("--cache DIR and --no-cache contradict each other; give one of them")
        return None
    root = Path(folder).expanduser() if folder is not None else default_cache_dir()
    if root is None:
        return None
    if root.exists() and not root.is_dir():
        raise SearchError(f"the results cache {root} is a file, not a folder; choose --cache DIR")
    return ResultCache(root)


def trial_threads(workers: int) -> int:
    """torch's intra-op threads that the trainings of a search started in this process run
    with (its trials and its verification): with several trial processes, the usable cores
    shared among them (as ``helper_env`` gives each); with one, this process's own. A lookup
    of what the cache holds for the search keys by it."""
    return max(1, usable_cores() // workers) if workers > 1 else torch.get_num_threads()


def helper_env(cache: ResultCache | None, *, threads: int) -> dict[str, str]:
    """The environment of a helper process this one starts (``--workers``): ``threads``
    threads, and this process's results cache (off when it is off)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    env[CACHE_ENV] = str(cache.root.resolve()) if cache is not None else "off"
    return env


def device_kind(device: torch.device | str) -> str:
    """``cpu``, or ``cuda (<device name>)``: results differ between kinds of device, not
    between two devices of one kind."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type


def _versions() -> dict[str, str]:
    from budgetnas.search.config import FINGERPRINT_VERSION

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
) -> dict[str, Any]:
    """Everything that determines a training's result: the spec, the data (``data``: its
    ``TrainVal.data_digest``), the recipe (epochs and seed included), the fidelity, the
    versions of torch, budgetnas and the training code, the device kind (``device_kind``) and,
    on a CPU, its instruction set (``cpu_kind``) and torch's intra-op ``threads``: a sum over
    two threads is taken in another order than over one."""
    cpu = {"cpu": cpu_kind(), "threads": threads} if device == "cpu" else {}
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
    """The source text of each module of ``TRAINING_SOURCES``."""
    out = []
    for name in TRAINING_SOURCES:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin is not None, name
        out.append(Path(spec.origin).read_text(encoding="utf-8"))
    return out


def training_code_digest() -> str:
    """``source_digest`` of the training code (``TRAINING_SOURCES``): what ``TRAINING_CODE``
    records for the current ``TRAINING``."""
    return source_digest(training_sources())


@dataclass(frozen=True)
class Entry:
    """A finished training: its result (validation and loss curves, train time, device,
    training images) and its weights (on the CPU)."""

    result: dict[str, Any]
    state: dict[str, torch.Tensor]


def _checksum(result_text: bytes, payload: bytes) -> str:
    return hashlib.sha256(result_text + b"\n" + payload).hexdigest()


def _encode(key: str, result: dict[str, Any], state: dict[str, torch.Tensor]) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    payload = buf.getvalue()
    result_text = json.dumps(result, sort_keys=True).encode()
    header = {"key": key, "result": result, "sha256": _checksum(result_text, payload)}
    return MAGIC + json.dumps(header, sort_keys=True).encode() + b"\n" + payload


def _decode(blob: bytes, key: str) -> Entry | None:
    """The entry in ``blob``, or None when it is not a whole, valid entry of ``key``."""
    try:
        if not blob.startswith(MAGIC):
            return None
        header_text, sep, payload = blob[len(MAGIC) :].partition(b"\n")
        if not sep:
            return None
        header = json.loads(header_text)
        result = header["result"]
        if header.get("key") != key or not isinstance(result, dict):
            return None
        if header.get("sha256") != _checksum(json.dumps(result, sort_keys=True).encode(), payload):
            return None
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or not all(
            isinstance(v, torch.Tensor) for v in state.values()
        ):
            return None
        if not result.get("val_curve") or len(result.get("loss_curve") or ()) != len(
            result["val_curve"]
        ):
            return None
        return Entry(result=result, state=state)
    except Exception:  # any damage at all: not trusted, trained again
        return None


class ResultCache:
    """Finished trainings in a folder shared by every process on the machine."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self._warned = False

    def __repr__(self) -> str:
        return f"ResultCache({str(self.root)!r})"

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.pt"

    def digest(self, data: TrainVal) -> str:
        """The digest of ``data`` the key holds (``TrainVal.data_digest``, the one a study
        stores), computed once per data set object."""
        return data.data_digest()

    def key(
        self,
        spec: ArchSpec,
        data: TrainVal,
        recipe: TrainConfig,
        *,
        device: torch.device | str,
        threads: int | None = None,
    ) -> str:
        """The key of training ``spec`` on ``data`` with ``recipe`` on ``device`` with
        ``threads`` intra-op threads (default: what this process trains with now)."""
        return result_key(
            identity(
                spec,
                recipe,
                data=self.digest(data),
                train_images=len(data.train),
                val_images=len(data.val),
                device=device_kind(device),
                threads=torch.get_num_threads() if threads is None else threads,
            )
        )

    def get(self, key: str) -> Entry | None:
        """The entry of ``key``; None when there is none or it is damaged (never trusted). An
        entry read is marked as used now (its modification time)."""
        path = self.path(key)
        try:
            blob = path.read_bytes()
        except OSError:
            return None
        entry = _decode(blob, key)
        if entry is not None:
            with contextlib.suppress(OSError):  # a cache this process may only read
                os.utime(path)
        return entry

    def put(self, key: str, result: dict[str, Any], state: dict[str, torch.Tensor]) -> bool:
        """Write the entry of ``key`` atomically (a temporary file moved into place). A cache
        that cannot be written is said once on stderr and costs nothing else: False."""
        blob = _encode(key, result, {k: v.detach().cpu() for k, v in state.items()})
        path = self.path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{key[:16]}-", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(blob)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as err:
            if not self._warned:
                self._warned = True
                print(f"warning: results cache {self.root} not written: {err}", file=sys.stderr)
            return False
        return True


def cached_train(
    cache: ResultCache | None,
    spec: ArchSpec,
    data: TrainVal,
    recipe: TrainConfig,
    *,
    device: torch.device | str,
    on_epoch: Callable[[int, float, float], None] | None = None,
    on_reuse: Callable[[], None] | None = None,
    fit: Callable[..., TrainResult] = train,
) -> tuple[TrainResult, bool]:
    """``fit(spec, data, recipe)`` (``trainers.train``), or its result from ``cache`` when the
    same training finished before: (result, whether it was reused). A reused result replays
    its curve through ``on_epoch`` (a pruner decides on it as on a training; ``on_reuse`` is
    called first) and holds the cached weights. A finished training is written to the cache;
    one that ``on_epoch`` stopped (pruned) is not."""
    device = torch.device(device)
    if cache is None:
        return fit(spec, data, recipe, device=device, on_epoch=on_epoch), False
    key = cache.key(spec, data, recipe, device=device)
    entry = cache.get(key)
    if entry is not None:
        model = init_model(spec, seed=recipe.seed, device=torch.device("cpu"))
        try:
            model.load_state_dict(entry.state)
        except (RuntimeError, KeyError):  # weights of another shape: damaged, trained again
            entry = None
    if entry is None:
        result = fit(spec, data, recipe, device=device, on_epoch=on_epoch)
        cache.put(key, _result_dict(result, len(data.train)), result.model.state_dict())
        return result, False
    if on_reuse is not None:
        on_reuse()
    r = entry.result
    val_curve = [float(a) for a in r["val_curve"]]
    loss_curve = [float(x) for x in r["loss_curve"]]
    if on_epoch is not None:
        for epoch, (acc, loss) in enumerate(zip(val_curve, loss_curve, strict=True)):
            on_epoch(epoch, acc, loss)
    return (
        TrainResult(
            model=model.to(device),
            val_curve=val_curve,
            loss_curve=loss_curve,
            train_time_s=float(r.get("train_time_s") or 0.0),
            device=str(r.get("device") or device_kind(device)),
        ),
        True,
    )


def _result_dict(result: TrainResult, train_images: int) -> dict[str, Any]:
    return {
        "val_curve": list(result.val_curve),
        "loss_curve": list(result.loss_curve),
        "val_acc": result.val_acc,
        "train_time_s": result.train_time_s,
        "device": result.device,
        "train_images": train_images,
    }
