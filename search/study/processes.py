"""The processes of a search: the run folder's lock, and helper processes that end with it.

A search (``budgetnas search``, new or ``--resume``) holds its run folder's lock while it runs,
so a second search or resume in the same folder is refused with one line instead of failing
the running trials of the first and training their candidates again. The lock is an
``fcntl.flock`` on ``search.lock`` in the run folder (``msvcrt.locking`` where there is no
fcntl), with the holder's pid, host and start time written in it; the operating system
releases it when its processes die, however they die.

The other processes of a search (its trial processes with ``--workers N``, its
verification's) are *helpers*: started by ``start_helper``, they inherit the lock and a pipe
on their stdin, and ``watch_parent`` makes each end within seconds of the search's first
process, however that one ends: the pipe's end of file (every platform) and, on Linux, the
parent-death signal. ``supervised`` waits for them when the search ends normally and stops
them (as Ctrl-C would: each records its running trial as interrupted) when it ends by an
exception or Ctrl-C. A ``budgetnas worker`` started by a user joins a study without the lock.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from budgetnas.search.errors import SearchError
from budgetnas.trainers.evaluate import resolve_device

if TYPE_CHECKING:
    from budgetnas.search.cache.store import ResultCache
    from budgetnas.search.study.config import SearchConfig

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = "search.lock"  # in the run folder
# how long a search waits for the lock of a search that has died while its helpers end
HELPERS_END_S = 15.0
# how long stopped helpers get to record their running trials as interrupted
STOP_GRACE_S = 30.0
_WINDOWS_LOCK_OFFSET = 1 << 20  # msvcrt locks a byte range: one byte past the holder's line

_held: set[int] = set()  # descriptors of the run locks this process holds


class RunLock:
    """The lock of a run folder: ``acquire`` takes it or raises ``SearchError`` naming the
    process that holds it; ``release`` (or leaving the ``with`` block) gives it back. Helpers
    started by ``start_helper`` while it is held hold it too, until they end."""

    def __init__(self, run: Path | str) -> None:
        self.run = Path(run)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock (a second call is a no-op). Refused while another search runs in the
        folder; a holder on this machine that has died already (its helpers end in seconds)
        is waited for up to ``HELPERS_END_S``."""
        if self._fd is not None:
            return
        path = self.run / LOCK_FILE
        deadline = time.monotonic() + HELPERS_END_S
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            while not _try_lock(fd):
                holder = _read_holder(fd)
                if not _has_ended(holder) or time.monotonic() > deadline:
                    os.close(fd)
                    raise SearchError(_in_use(self.run, holder))
                time.sleep(0.2)
            if _same_file(fd, path):
                break
            os.close(fd)  # its holder removed the file meanwhile: lock the one there now
        line = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()})
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, (line + "\n").encode())
        self._fd = fd
        _held.add(fd)

    def release(self) -> None:
        """Give the lock back and remove its file (the run folder is left as it was). The
        descriptor is closed, not unlocked: a helper that still runs keeps the lock until it
        ends."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        _held.discard(fd)
        path = self.run / LOCK_FILE
        if os.name == "posix":
            with suppress(OSError):
                path.unlink()
            os.close(fd)
        else:  # an open file cannot be removed there
            os.close(fd)
            with suppress(OSError):
                path.unlink()

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _try_lock(fd: int) -> bool:
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # BlockingIOError: held elsewhere
            return False
        return True
    import msvcrt

    os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
    try:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError:
        return False
    return True


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``fd`` is the file at ``path`` (not one a holder removed meanwhile)."""
    try:
        there = os.stat(path)
    except FileNotFoundError:
        return False
    here = os.fstat(fd)
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _read_holder(fd: int) -> dict[str, Any]:
    """The holder's pid, host and start, as it wrote them ({} while it has not yet)."""
    os.lseek(fd, 0, os.SEEK_SET)
    try:
        holder = json.loads(os.read(fd, 4096).decode(errors="replace").strip() or "{}")
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _has_ended(holder: dict[str, Any]) -> bool:
    """Whether the holder was a process on this machine that has ended (its helpers keep
    the lock for the seconds they take to end)."""
    if os.name != "posix" or holder.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(holder["pid"]), 0)
    except (KeyError, TypeError, ValueError, PermissionError):
        return False
    except ProcessLookupError:
        return True
    return False


def _in_use(run: Path, holder: dict[str, Any]) -> str:
    if "pid" in holder:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(holder.get("since", 0))))
        who = f"pid {holder['pid']} on {holder.get('host', '?')}, since {since}"
        if _has_ended(holder):
            who += "; it has ended, its helper processes have not"
    else:
        who = "a process that has not written its details yet"
    return f"{run} is in use by another budgetnas search ({who}); nothing was changed"


# ---- helpers: started here, ending with this process ------------------------------------------


def start_helper(cmd: Sequence[str], *, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start a helper process of this one: it inherits the run locks held here and a pipe on
    its stdin (its end of file tells the helper's ``watch_parent`` that this process died),
    in a process group of its own (a terminal's Ctrl-C reaches this process, which stops its
    helpers itself: ``supervised``)."""
    if os.name == "posix":
        extra: dict[str, Any] = {"pass_fds": tuple(sorted(_held)), "start_new_session": True}
    else:
        extra = {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    return subprocess.Popen(list(cmd), env=env, stdin=subprocess.PIPE, **extra)


def watch_parent(*, deathsig: bool = True) -> None:
    """In a helper: end this process within moments of the death of the process that started
    it (``start_helper``), whether it ends normally or not (kill -9, the OOM killer, a closed
    terminal). A thread waits for the end of file on stdin, the pipe only the parent holds;
    on Linux the parent's death also sends SIGKILL (``PR_SET_PDEATHSIG``; ``deathsig=False``
    leaves it out). A SIGTERM (how the parent stops its helpers) is taken as Ctrl-C, so the
    running trial is recorded as interrupted."""
    if deathsig and sys.platform.startswith("linux"):
        _die_with_parent()
    if hasattr(signal, "SIGTERM") and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    threading.Thread(target=_exit_at_end_of_stdin, name="parent-watch", daemon=True).start()


def _die_with_parent() -> None:
    import ctypes

    PR_SET_PDEATHSIG = 1
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # no prctl: the pipe alone watches
        pass


def _exit_at_end_of_stdin() -> None:
    while True:
        try:
            chunk = os.read(0, 512)  # raw reads: no buffer lock held at interpreter exit
        except InterruptedError:
            continue
        except OSError:
            chunk = b""
        if not chunk:
            os._exit(1)  # the parent is gone: nothing is waiting for this process's work


def stop_helpers(procs: Sequence[subprocess.Popen], *, grace: float = STOP_GRACE_S) -> None:
    """Stop helpers as Ctrl-C would (SIGTERM, which a helper takes as Ctrl-C), wait up to
    ``grace`` seconds for them to record their running trials, then kill those left. A
    second Ctrl-C meanwhile kills them at once."""
    try:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + grace
        for p in procs:
            try:
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    except BaseException:
        for p in procs:
            if p.poll() is None:
                p.kill()
        raise
    finally:
        _close_pipes(procs)


@contextmanager
def supervised(procs: Sequence[subprocess.Popen], *, what: str, quiet: bool) -> Iterator[None]:
    """Run the ``with`` block beside helper processes ``procs``: when it ends normally, wait
    for them (they end on their own) and say which exited with an error (unless ``quiet``);
    when it ends by an exception (Ctrl-C, an error), or Ctrl-C comes while waiting, stop
    them (``stop_helpers``) before the exception goes on."""
    try:
        yield
    except BaseException:
        stop_helpers(procs)
        raise
    try:
        for p in procs:
            p.wait()
    except BaseException:
        stop_helpers(procs)
        raise
    _close_pipes(procs)
    for p in procs:
        if p.returncode != 0 and not quiet:
            print(f"{what} process {p.pid} exited with {p.returncode}", file=sys.stderr)


def _close_pipes(procs: Sequence[subprocess.Popen]) -> None:
    for p in procs:
        if p.stdin is not None and not p.stdin.closed:
            with suppress(OSError):
                p.stdin.close()


# --workers when it is not given, on a CPU: one single-threaded trial process per core, at
# most this many. Two processes of one thread each trained 1.48-1.50x as many epochs per
# second in total as one process of two threads on a 2-core CPU (docs/benchmarks.md#speed);
# on a GPU one process until a measurement there says otherwise.
MAX_CPU_WORKERS = 8


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, where the OS says), not every
    core of the machine."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else (os.cpu_count() or 1)


def default_workers(device: str | None) -> int:
    """``--workers`` when it is not given: one trial process per usable core on a CPU (at
    most ``MAX_CPU_WORKERS``), one on a GPU."""
    if resolve_device(device).type != "cpu":
        return 1
    return max(1, min(MAX_CPU_WORKERS, usable_cores()))


def threads_per_worker(workers: int) -> int:
    return max(1, usable_cores() // workers)


def spawn_workers(
    cfg: SearchConfig, cache: ResultCache | None = None, *, trials_so_far: int = 0
) -> list[subprocess.Popen]:
    """cfg.workers - 1 more processes working on the same study (this one is the first),
    sharing its results cache: helpers (``search.processes``) that end with this process,
    each told its index and the trials the study held at the start, which seed its sampler
    (``helper_seed``)."""
    import torch

    from budgetnas.search.cache.store import helper_env

    threads = threads_per_worker(cfg.workers)
    torch.set_num_threads(threads)
    env = helper_env(cache, threads=threads)
    cmd = [
        sys.executable,
        "-m",
        "budgetnas.search.cli",
        "worker",
        "--storage",
        cfg.storage_url(),
        "--study",
        cfg.study_name,
        "--out",
        str(cfg.out),
        "--device",
        cfg.device,
        "--quiet",
    ]
    if cfg.data.data_dir:
        cmd += ["--data-dir", cfg.data.data_dir]
    return [
        start_helper(
            [*cmd, "--helper-index", str(k), "--helper-trials-before", str(trials_so_far)],
            env=env,
        )
        for k in range(1, cfg.workers)
    ]
