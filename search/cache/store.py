"""A results cache shared by every search on the machine: a finished training and its weights,
keyed by everything that determines it (``search.cache.keys``), so that the same training (a
reference network at a rung, a verify seed, a candidate met again) is not run again by the
next search (``search.cache.reuse``).

An entry is one file, ``<root>/<key[:2]>/<key>.pt``: a header line (the key, the result, a
checksum) and the weights. It is written to a temporary file and moved into place, so a reader
never sees half an entry and two processes writing the same key both leave a whole one (the
last wins); a temporary file a killed writer left is no entry (``search.cache.admin`` removes it
once it is stale). An entry that cannot be read, whose checksum or key does not match, is
ignored: the training runs again and replaces it. Pruned trainings are never written. Reading
an entry marks it as used (its modification time), so that trimming by age keeps what is used.

An entry holds, to the bit, what this training computes here: the cache changes no result, so
it is no part of a search's settings or fingerprint. It is on by default for the command line,
in ``$XDG_CACHE_HOME/budgetnas/results`` (else ``~/.cache/budgetnas/results``); ``--cache DIR``
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from budgetnas.search.cache.keys import device_kind, identity, result_key
from budgetnas.search.errors import SearchError
from budgetnas.space.spec import ArchSpec
from budgetnas.trainers.data import TrainVal
from budgetnas.trainers.graphs import use_graphs
from budgetnas.trainers.recipe import TrainConfig

__all__ = [
    "CACHE_ENV",
    "Entry",
    "ResultCache",
    "default_cache_dir",
    "helper_env",
    "open_cache",
]

CACHE_ENV = "BUDGETNAS_CACHE"  # a folder, or off / none / 0 for no cache
OFF = ("", "off", "none", "no", "0", "false")
MAGIC = b"budgetnas-result 1\n"


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
                graphs=use_graphs(dev, None)
                if (dev := torch.device(device)).type == "cuda"
                else None,
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


def _graphs(device: torch.device) -> bool | None:
    """On CUDA, whether this process's trainings capture their step (``--no-graphs``)."""
    return use_graphs(device, None) if device.type == "cuda" else None
