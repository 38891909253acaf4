"""The race at the end of a search, run: entrants chosen once and stored on the study, one
more seed at a time over the search's processes, within its time budget.

``search.race`` holds the rules (pure functions of the seeds so far); this module reads the
seeds from the study, trains the next one the rules ask for and stores it, in every process
of the search at once: each process takes the next seed under a lock file in the run folder
(``race.lock``; the networks being trained are claimed in ``race-claims.json``), so two
processes never train the same network at once (one network's record is written by one
process) and a claim whose process died is dropped. With ``--budget-time`` a seed is started
only when the time it took that network before (its training at the target) fits before
the deadline with the reports; a race the deadline cut short says so beside its verdict.

The entrants (``race:entrants``) and the race's own account (``race:account``: seeds trained
and their seconds, seeds from the cache, whether the deadline cut it, and what verifying the
front and the seed networks with a fixed number of seeds would have cost) are study user
attributes; the answer and the verdicts are computed from the stored seeds whenever they are
read (``race_of``), so a later ``budgetnas verify`` of an entrant counts too.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import torch

from budgetnas.search.schedule.budgets import END_MARGIN_S
from budgetnas.search.study.config import SearchConfig
from budgetnas.search.study.processes import start_helper, supervised, watch_parent
from budgetnas.search.study.runs import read_config
from budgetnas.search.study.timing import DEADLINE_ATTR
from budgetnas.search.verification.records import stored_results
from budgetnas.search.verification.seed_order import finished, next_seed
from budgetnas.search.verification.seedlines import OnFailed, OnResult, printers
from budgetnas.search.verification.standing import (
    ACCOUNT_ATTR,
    ENTRANTS_ATTR,
    RaceView,
    budget_word,
    choose_entrants,
    fixed_cost,
    race_header,
    race_of,
    seed_seconds,
)
from budgetnas.trainers.fused import fuse_seeds_by_default

if TYPE_CHECKING:
    from budgetnas.search.cache.store import ResultCache

LOCK_FILE, CLAIMS_FILE = "race.lock", "race-claims.json"
SAFETY = 1.1  # a seed is timed at this much of the time it took before
POLL_S = 1.0  # how often a process with nothing to start looks again while others train


# ---- claims: which network each process is training ------------------------------------


@contextlib.contextmanager
def _locked(run: Path) -> Iterator[None]:
    """An exclusive lock on the run's race (``fcntl.flock``; where there is none, a lock
    file created exclusively)."""
    path = run / LOCK_FILE
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on the platforms tested here
        while True:
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                break
            except FileExistsError:
                time.sleep(0.05)
        try:
            yield
        finally:
            os.close(fd)
            os.unlink(path)
        return
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


HOST = socket.gethostname()


def _claims(run: Path) -> dict[str, dict[str, Any]]:
    """The networks being trained now (key -> claim), those of dead processes dropped."""
    try:
        claims = json.loads((run / CLAIMS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return {k: c for k, c in claims.items() if c.get("host") != HOST or _alive(int(c["pid"]))}


def _write_claims(run: Path, claims: dict[str, dict[str, Any]]) -> None:
    tmp = run / f".{CLAIMS_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps(claims))
    os.replace(tmp, run / CLAIMS_FILE)


# ---- one process of the race -----------------------------------------------------------


def race_process(
    run: Path | str,
    *,
    cache: ResultCache | None = None,
    on_result: OnResult | None = None,
    on_failed: OnFailed | None = None,
    device: str | None = None,
    clock: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """Train the race's seeds in this process until the race is over or the deadline leaves
    no time for the next one; returns this process's account (seeds trained, their seconds,
    seeds from the cache, whether the deadline stopped it)."""
    from budgetnas.search.verification.retrain import Verifier

    run = Path(run)
    cfg = read_config(run)
    verifier = Verifier(
        run, device=device or cfg.device, train_subset=cfg.data.train_subset, cache=cache
    )
    fuse = cfg.fuse_seeds
    verifier.fuse = fuse_seeds_by_default(verifier.device) if fuse is None else fuse
    study = verifier.study
    deadline = study.user_attrs.get(DEADLINE_ATTR)
    account = {"trained": 0, "seconds": 0.0, "cached": 0, "cut": False}
    while True:
        with _locked(run):
            view = race_of(cfg, study)
            claims = _claims(run)
            fits = _fits(view, study, deadline, clock)
            if cfg.budget_epochs:
                fits = _within_epochs(cfg, study, len(claims), fits)
            key = next_seed(view.race, busy=claims, fits=fits)
            if key is None:
                if next_seed(view.race, busy=claims) is not None:
                    account["cut"] = True  # wanted, but the compute budget has no room for it
                if not claims:
                    break  # else others are training: their seeds may ask for one that fits
            else:
                claims[key] = {"pid": os.getpid(), "host": HOST, "since": time.time()}
                _write_claims(run, claims)
        if key is None:
            time.sleep(POLL_S)  # others are training: their seeds may ask for more
            continue
        try:
            entrant = view.race.entrants[key]
            seeds, start = entrant.done + 1, view.race.start_of(entrant)
            missing = start - entrant.done  # timed as separate seeds: a fused model is no slower
            if verifier.fuse and missing > 1 and (fits is None or fits(key, missing)):
                seeds = start  # its start seeds at once, as one fused model
            item = verifier.seeds(view.items[key], seeds)
            for f in item.failed:
                if f.seed in item.failed_now and on_failed is not None:
                    on_failed(item, f)
            for r in (r for r in item.runs if r.seed not in _seeds(view, key)):
                if on_result is not None:
                    on_result(item, r)
                if r.cached:
                    account["cached"] += 1
                else:
                    account["trained"] += 1
                    account["seconds"] += r.train_time_s
        finally:
            with _locked(run):
                claims = _claims(run)
                claims.pop(key, None)
                _write_claims(run, claims)
    return account


def _fits(
    view: RaceView, study: optuna.Study, deadline: float | None, clock: Callable[[], float]
) -> Callable[..., bool] | None:
    """Whether one more seed of a network (``fits(key)``; ``fits(key, n)``: n more) fits
    before ``deadline`` with the reports (None: no deadline, everything fits)."""
    if deadline is None:
        return None

    def fits(key: str, n: int = 1) -> bool:
        needed = SAFETY * n * seed_seconds(view, study, key) + END_MARGIN_S
        return clock() + needed <= float(deadline)

    return fits


def _within_epochs(
    cfg: SearchConfig,
    study: optuna.Study,
    in_flight: int,
    fits: Callable[..., bool] | None,
) -> Callable[..., bool]:
    """``--budget-epochs``: one more seed at the target fits when what the search trained,
    what verification trained so far (a seed from the cache trained nothing), the seeds in
    flight and this one stay within the budget (and ``fits`` holds too)."""
    from budgetnas.search.schedule.budgets import trained_image_epochs

    target = cfg.schedule.target.image_epochs
    limit = cfg.budget_epochs * target
    spent = trained_image_epochs(study.get_trials(deepcopy=False), cfg.schedule.rungs)
    for record in stored_results(study).values():
        if record.fidelity is not None:
            spent += sum(not r.cached for r in record.runs) * record.fidelity.image_epochs

    def within(key: str, n: int = 1) -> bool:
        room = spent + (in_flight + n) * target <= limit
        return room and (fits is None or fits(key, n))

    return within


def _seeds(view: RaceView, key: str) -> set[int]:
    record = view.records.get(key)
    return {r.seed for r in record.runs} if record else set()


# ---- the race of a search: its processes, its account -----------------------------------


def run_race(
    cfg: SearchConfig,
    study: optuna.Study,
    *,
    quiet: bool = False,
    cache: ResultCache | None = None,
    threads: int | None = None,
) -> RaceView:
    """The end of a search: choose the entrants (once; a resumed race keeps them), race them
    over ``cfg.workers`` processes (this one and helpers of ``threads`` threads each), store
    the race's account, and return the race as the study holds it."""
    keys = list(study.user_attrs.get(ENTRANTS_ATTR) or [])
    fresh = choose_entrants(cfg, study)
    keys += [k for k in fresh if k not in keys]  # a resumed search may have added to the front
    study.set_user_attr(ENTRANTS_ATTR, keys)
    run = Path(cfg.out)
    if not quiet:
        print(race_header(cfg, keys), file=sys.stderr)
    show, show_failed = printers(quiet)
    helpers = []
    if cfg.workers > 1:
        from budgetnas.search.cache.store import helper_env

        env = helper_env(cache, threads=threads or 1)
        argument = json.dumps({"run": str(run), "quiet": quiet})
        command = [sys.executable, "-m", "budgetnas.search.verification.racing", argument]
        helpers = [start_helper(command, env=env) for _ in range(cfg.workers - 1)]
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        with supervised(helpers, what="race", quiet=quiet):
            mine = race_process(run, cache=cache, on_result=show, on_failed=show_failed)
    finally:
        torch.set_num_threads(before)
    view = race_of(cfg, study)
    accounts = [mine] + [_read_account(run, p.pid) for p in helpers]
    account = {
        "processes": sum(1 for a in accounts if a),  # those that raced to the end
        "trained": sum(a.get("trained", 0) for a in accounts),
        "seconds": round(sum(a.get("seconds", 0.0) for a in accounts), 3),
        "cached": sum(a.get("cached", 0) for a in accounts),
        "cut": budget_word(cfg)
        if any(a.get("cut") for a in accounts) and not finished(view.race)
        else "",
        "fixed_seeds": cfg.verify_seeds,
        "fixed_seconds": round(fixed_cost(cfg, study, view), 3),
    }
    study.set_user_attr(ACCOUNT_ATTR, account)
    return view


def _account_file(run: Path, pid: int) -> Path:
    return run / f".race-account-{pid}.json"


def _read_account(run: Path, pid: int) -> dict[str, Any]:
    path = _account_file(run, pid)
    try:
        account = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    path.unlink(missing_ok=True)
    return account


def main(argument: str) -> None:
    """A helper process of the race: race in the run ``argument`` (JSON) names; it ends with
    the process that started it (``search.processes.watch_parent``)."""
    from budgetnas.search.cache.store import open_cache

    watch_parent()
    args = json.loads(argument)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or torch.get_num_threads()))
    show, show_failed = printers(bool(args.get("quiet")))
    run = Path(args["run"])
    try:
        account = race_process(run, cache=open_cache(), on_result=show, on_failed=show_failed)
    except KeyboardInterrupt:  # stopped by the search, which says so; what finished is stored
        sys.exit(130)
    _account_file(run, os.getpid()).write_text(json.dumps(account))


if __name__ == "__main__":
    main(sys.argv[1])


# ---- what the race says -----------------------------------------------------------------
