"""A results cache shared by every search on the machine: a finished training and its weights,
keyed by everything that determines it, so that the same training (a reference network at a
rung, a verify seed, a candidate met again) is not run again by the next search.

The key is the sha256 of a canonical JSON of the training's identity (``identity``): the spec,
the exact images and labels trained and validated on (their digest), the recipe with its epochs
and seed, the fidelity (epochs x images), the torch and budgetnas versions and the device kind.
An entry is one file, ``<root>/<key[:2]>/<key>.pt``: a header line (the key, the result, a
checksum) and the weights. It is written to a temporary file and moved into place, so a reader
never sees half an entry and two processes writing the same key both leave a whole one (the
last wins). An entry that cannot be read, whose checksum or key does not match, is ignored:
the training runs again and replaces it. Pruned trainings are never written.

The cache changes no result (the same identity trains the same network), so it is no part of a
search's settings or fingerprint. It is on by default for the command line, in
``$XDG_CACHE_HOME/budgetnas/results`` (else ``~/.cache/budgetnas/results``); ``--cache DIR``
or ``$BUDGETNAS_CACHE`` move it, ``--no-cache`` or ``BUDGETNAS_CACHE=off`` turn it off.
"""

from __future__ import annotations

import contextlib
import hashlib
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
    "data_digest",
    "default_cache_dir",
    "device_kind",
    "helper_env",
    "identity",
    "open_cache",
    "result_key",
]

CACHE_ENV = "BUDGETNAS_CACHE"  # a folder, or off / none / 0 for no cache
OFF = ("", "off", "none", "no", "0", "false")
FORMAT = 1  # of the key's identity and of an entry's file
MAGIC = b"budgetnas-result 1\n"
# What a training computes, for the same spec, data, recipe and versions: raised when the
# training code changes its results (2: element dropout masks from 16-bit SFC64 draws), so
# that an entry trained by earlier code is not taken for one of this code.
TRAINING = 2


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


def data_digest(data: TrainVal) -> str:
    """sha256 of exactly the images and labels trained and validated on, in their order: the
    data set, its split and the training subset in one value."""
    h = hashlib.sha256()
    for name, split in (("train", data.train), ("val", data.val)):
        for t in (split.x, split.y):
            h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
            h.update(t.contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


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
) -> dict[str, Any]:
    """Everything that determines a training's result: the spec, the data (``data``: its
    ``data_digest``), the recipe (epochs and seed included), the fidelity, the versions of
    torch and budgetnas and the device kind (``device_kind``)."""
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
        # bf16 on a CPU runs on the hardware's own bf16 path (AVX512-BF16, AMX) or emulated:
        # results of one kind of CPU are not another's (fp32 keys stay as they were)
        **({"cpu": cpu_kind()} if recipe.precision != "fp32" and device == "cpu" else {}),
    }


def cpu_kind() -> str:
    """The instruction set torch uses on this CPU and whether it computes bf16 in hardware."""
    from budgetnas.trainers.precision import native_bf16_cpu

    return f"{torch.backends.cpu.get_cpu_capability()}, native bf16 {native_bf16_cpu()}"


def result_key(ident: dict[str, Any]) -> str:
    """The cache key of an identity: the sha256 of its canonical JSON."""
    text = json.dumps(ident, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


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
        self._digests: dict[int, tuple[TrainVal, str]] = {}  # data sets met, by id
        self._warned = False

    def __repr__(self) -> str:
        return f"ResultCache({str(self.root)!r})"

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.pt"

    def digest(self, data: TrainVal) -> str:
        """``data_digest(data)``, computed once per data set object."""
        held = self._digests.get(id(data))
        if held is None or held[0] is not data:
            held = (data, data_digest(data))
            self._digests[id(data)] = held
        return held[1]

    def key(
        self, spec: ArchSpec, data: TrainVal, recipe: TrainConfig, *, device: torch.device | str
    ) -> str:
        """The key of training ``spec`` on ``data`` with ``recipe`` on ``device``."""
        return result_key(
            identity(
                spec,
                recipe,
                data=self.digest(data),
                train_images=len(data.train),
                val_images=len(data.val),
                device=device_kind(device),
            )
        )

    def get(self, key: str) -> Entry | None:
        """The entry of ``key``; None when there is none or it is damaged (never trusted)."""
        try:
            blob = self.path(key).read_bytes()
        except OSError:
            return None
        return _decode(blob, key)

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
