"""Seeing and trimming the results cache (``budgetnas cache``): its entries by age, and pruning
by age or by size, the oldest first.

An entry is a file ``<root>/<key[:2]>/<key>.pt`` (``search.cache``); its age is the time since
it was last written or reused (a reuse marks it). A temporary file ``.<key[:16]>-*.tmp`` is a
write in progress, or one a killed process left: it is never an entry; once older than
``STALE_TMP_S`` no writer is at work on it, and pruning removes it. Nothing else in the folder
is touched.
"""

from __future__ import annotations

import contextlib
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path

from budgetnas.search.errors import SearchError

__all__ = [
    "AGE_BANDS",
    "STALE_TMP_S",
    "CacheFile",
    "Pruned",
    "Scan",
    "format_size",
    "listing",
    "parse_age",
    "parse_size",
    "prune",
    "scan",
]

STALE_TMP_S = 600.0  # a temporary file this old is a killed writer's (a write takes seconds)
DAY = 86_400.0
# how the listing groups entries: (up to this age in seconds, label)
AGE_BANDS = (
    (DAY, "under 1 day"),
    (7 * DAY, "1 to 7 days"),
    (30 * DAY, "7 to 30 days"),
    (math.inf, "30 days or more"),
)
_ENTRY = re.compile(r"^[0-9a-f]{64}\.pt$")
_TMP = re.compile(r"^\.[0-9a-f]{16}-.*\.tmp$")
_AGE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|m|min|h|d|w)\s*$")
_AGE_UNITS = {"s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": DAY, "w": 7 * DAY}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?)(i?b)?\s*$")
_SIZE_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


@dataclass(frozen=True)
class CacheFile:
    path: Path
    size: int  # bytes
    mtime: float  # last written or reused, seconds since the epoch


@dataclass(frozen=True)
class Scan:
    """What a cache folder holds: its entries and the temporary files killed writers left
    (``stale``); a write in progress is in neither."""

    root: Path
    exists: bool
    entries: list[CacheFile]
    stale: list[CacheFile]

    @property
    def size(self) -> int:
        return sum(f.size for f in self.entries)


@dataclass(frozen=True)
class Pruned:
    """What ``prune`` removed, and what is left."""

    entries: int
    entry_bytes: int
    stale: int
    stale_bytes: int
    left: Scan


def _file(path: Path) -> CacheFile | None:
    try:
        st = path.stat()
    except OSError:  # removed meanwhile (another process pruned, or moved an entry in)
        return None
    return CacheFile(path, st.st_size, st.st_mtime)


def scan(root: Path | str, *, now: float | None = None) -> Scan:
    """The entries of the cache at ``root`` and its stale temporary files (older than
    ``STALE_TMP_S`` at ``now``)."""
    root, now = Path(root), time.time() if now is None else now
    entries, stale = [], []
    if root.is_dir():
        for folder in sorted(root.iterdir()):
            if not (folder.is_dir() and re.fullmatch(r"[0-9a-f]{2}", folder.name)):
                continue
            for path in sorted(folder.iterdir()):
                if _ENTRY.match(path.name) and path.name.startswith(folder.name):
                    f = _file(path)
                    entries += [f] if f is not None else []
                elif _TMP.match(path.name):
                    f = _file(path)
                    if f is not None and now - f.mtime > STALE_TMP_S:
                        stale.append(f)
    return Scan(root, root.is_dir(), entries, stale)


def format_size(n: int) -> str:
    """Bytes as a person reads them, in units of 1,024: ``0 B``, ``1.5 KB``, ``3.0 MB``."""
    if n < 1024:
        return f"{n} B"
    for unit in ("KB", "MB", "GB", "TB"):
        n /= 1024
        if n < 1024 or unit == "TB":
            return f"{n:.1f} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def _entries(n: int) -> str:
    return f"{n} entr{'y' if n == 1 else 'ies'}"


def listing(found: Scan, *, now: float | None = None) -> list[str]:
    """The lines of ``budgetnas cache``: the folder, its entries and their size, by age; the
    unfinished writes of killed processes, where there are any."""
    now = time.time() if now is None else now
    head = f"results cache {found.root}: {_entries(len(found.entries))}, {format_size(found.size)}"
    if not found.exists:
        return [head + " (the folder does not exist yet)"]
    lines = [head]
    low = -math.inf
    width = max(len(label) for _, label in AGE_BANDS)
    for high, label in AGE_BANDS:
        band = [f for f in found.entries if low <= now - f.mtime < high]
        size = format_size(sum(f.size for f in band))
        lines.append(f"  {label:<{width}}  {_entries(len(band)):>12}  {size:>9}")
        low = high
    lines.append("  (age: since an entry was last written or reused)")
    if found.stale:
        n, size = len(found.stale), format_size(sum(f.size for f in found.stale))
        lines.append(
            f"{n} unfinished write{'s' * (n > 1)} ({size}) left by stopped processes, no "
            "entries: --prune removes them"
        )
    return lines


def parse_age(text: str, *, what: str = "--older-than") -> float:
    """``30d``, ``12h``, ``90m``, ``2w``, ``45s`` -> seconds; ``SearchError`` otherwise."""
    m = _AGE.match(str(text).lower())
    if not m:
        raise SearchError(
            f"bad {what} {text!r}: write an age with its unit, such as 30d, 12h, 90m or 2w"
        )
    return float(m.group(1)) * _AGE_UNITS[m.group(2)]


def parse_size(text: str, *, what: str = "--max-size") -> int:
    """``500M``, ``1.5G``, ``200k``, ``2GB``, ``2GiB`` (units of 1,024) or bytes -> bytes;
    ``SearchError`` otherwise."""
    m = _SIZE.match(str(text).lower())
    if not m:
        raise SearchError(
            f"bad {what} {text!r}: write a size such as 500M, 2G or 200k (units of 1,024 bytes)"
        )
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2)])


def _remove(files: list[CacheFile]) -> tuple[int, int]:
    """Remove ``files``: (how many, bytes). A file gone meanwhile is not counted."""
    n = size = 0
    for f in files:
        with contextlib.suppress(FileNotFoundError):
            f.path.unlink()
            n, size = n + 1, size + f.size
    return n, size


def prune(
    root: Path | str,
    *,
    older_than: float | None = None,
    max_size: int | None = None,
    now: float | None = None,
) -> Pruned:
    """Remove the entries not used for ``older_than`` seconds, then the oldest until the
    entries take at most ``max_size`` bytes, and every stale temporary file; the folders left
    empty go too. Safe beside searches at work: an entry removed while it is read is trained
    again; a temporary file is removed only once stale."""
    now = time.time() if now is None else now
    found = scan(root, now=now)
    doomed = []
    keep = sorted(found.entries, key=lambda f: f.mtime)  # the oldest first
    if older_than is not None:
        doomed = [f for f in keep if now - f.mtime >= older_than]
        keep = [f for f in keep if now - f.mtime < older_than]
    if max_size is not None:
        total = sum(f.size for f in keep)
        while keep and total > max_size:
            oldest = keep.pop(0)
            doomed.append(oldest)
            total -= oldest.size
    entries, entry_bytes = _remove(doomed)
    stale, stale_bytes = _remove(found.stale)
    for folder in {f.path.parent for f in doomed + found.stale}:
        with contextlib.suppress(OSError):  # not empty: an entry or a write in progress
            folder.rmdir()
    return Pruned(entries, entry_bytes, stale, stale_bytes, scan(root, now=now))


def prune_limits(
    *, prune: bool, older_than: str | None, max_size: str | None
) -> tuple[float | None, int | None]:
    """``budgetnas cache``'s limits as given: (age in seconds, size in bytes); ``SearchError``
    for a limit without ``--prune``, ``--prune`` without one, or a value that is not one."""
    if not prune and (older_than is not None or max_size is not None):
        raise SearchError("--older-than and --max-size go with --prune")
    age = parse_age(older_than) if older_than is not None else None
    size = parse_size(max_size) if max_size is not None else None
    if prune and age is None and size is None:
        raise SearchError(
            "--prune needs --older-than AGE or --max-size SIZE (e.g. --older-than 30d)"
        )
    return age, size


def pruned_line(root: Path | str, done: Pruned) -> str:
    """``pruned DIR: removed 2 entries (78.2 KB); left: 5 entries, 148.5 KB``, and the
    unfinished writes removed, where there were any."""
    n, left = done.entries, done.left
    stale = (
        f" and {done.stale} unfinished write{'s' * (done.stale > 1)} "
        f"({format_size(done.stale_bytes)})"
        if done.stale
        else ""
    )
    return (
        f"pruned {root}: removed {n} entr{'y' if n == 1 else 'ies'} "
        f"({format_size(done.entry_bytes)}){stale}; left: {len(left.entries)} "
        f"entr{'y' if len(left.entries) == 1 else 'ies'}, {format_size(left.size)}"
    )
