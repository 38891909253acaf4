"""Which job a trial of the search takes: what it was queued as, or the schedule's next job
(a new candidate at rung 0, or a promotion claimed against the other processes' trials)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from budgetnas.search.schedule.promotion import Schedule
from budgetnas.search.schedule.trials import is_lost, lineage, promoted_from

CLAIM_SETTLE_S = 0.5  # seconds between the two readings of a promotion's claims
WORKER = f"{socket.gethostname()}:{os.getpid()}"  # this process, on each trial it runs


def take_job(
    trial: optuna.Trial,
    schedule: Schedule,
    *,
    sampling_open: Callable[[list[FrozenTrial]], bool | None] | None,
    trials_wanted: int,
) -> FrozenTrial | None:
    """Decide what ``trial`` is, before anything else: returns the trial it promotes (None
    for a new candidate or a reference). A queued trial (a reference, or the requeued copy
    of a trial whose process died) is what it was queued as; a new one takes the schedule's
    next job, a promotion claimed against other processes (and trials in flight), or raises
    ``TrialPruned`` marked idle when another took the last job meanwhile."""
    attrs = trial.user_attrs
    if "rung" in attrs or attrs.get("reference") is not None:
        source = attrs.get("promoted_from")
        if source is None:
            return None
        return trial.study.get_trials(deepcopy=False)[int(source)]
    for _ in range(5):  # a promotion another process claimed at once: look again
        # the study as it stands without this trial, which is nothing yet, and without
        # the trials other processes started after it (they decide after this one)
        trials = [
            t
            for t in trial.study.get_trials(deepcopy=False)
            if t.number < trial.number or (t.number > trial.number and not _fresh(t))
        ]
        open_ = sampling_open(trials) if sampling_open is not None else None
        job = schedule.next_job(trials, sampling_open=open_, trials_wanted=trials_wanted)
        if job.kind != "promote":
            break
        assert job.source is not None
        if claim(trial, job.source, job.rung):
            return job.source
    if job.kind == "sample":
        trial.set_user_attr("rung", 0)
        return None
    trial.set_user_attr("idle", True)  # another process took the last job meanwhile
    raise optuna.TrialPruned("nothing left to do")


def claim(trial: optuna.Trial, source: FrozenTrial, rung: int) -> bool:
    """Claim the promotion of ``source``: written on this trial, then read back; when
    several processes claimed it at once, the earliest trial keeps it. With other
    processes at work the claims are read twice, a moment apart, so that one written just
    after the first reading is seen (storages have no lock: in a rare race two processes
    may still train the same promotion). This process's own trials in flight (``--concurrent``)
    claim one after another: no reason to wait for them."""
    trial.set_user_attr("promoted_from", source.number)
    trial.set_user_attr("candidate", lineage(source))
    trial.set_user_attr("rung", rung)

    def earliest() -> tuple[bool, bool]:
        trials = trial.study.get_trials(deepcopy=False)
        claims = [t.number for t in trials if promoted_from(t) == source.number and not is_lost(t)]
        others = any(
            t.state == TrialState.RUNNING
            and t.number != trial.number
            and t.user_attrs.get("worker") != WORKER
            for t in trials
        )
        return min(claims) == trial.number, others

    first, others = earliest()
    if first and others:
        time.sleep(CLAIM_SETTLE_S)
        first, _ = earliest()
    if first:
        return True
    for name in ("promoted_from", "candidate", "rung"):
        trial.set_user_attr(name, None)
    return False


def _fresh(trial: FrozenTrial) -> bool:
    """A trial another process has just started and not yet said what it is."""
    attrs = trial.user_attrs
    return (
        trial.state == TrialState.RUNNING and "rung" not in attrs and attrs.get("reference") is None
    )
