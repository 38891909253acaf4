"""Optuna callbacks that end a search's trial loop: the schedule is done (or only the race's
time is left), failures keep coming, or every candidate is over a cap."""

from __future__ import annotations

import time
import warnings

import optuna
from optuna.trial import FrozenTrial, TrialState

from budgetnas.search.errors import SearchError, SearchStopped
from budgetnas.search.schedule.budgets import EpochBudget, TimeBudget
from budgetnas.search.schedule.trials import rung0_used
from budgetnas.search.study.config import SearchConfig
from budgetnas.search.study.runs import (
    FINISHED,
    is_rejected,
)
from budgetnas.search.study.timing import (
    plan,
)

IDLE_IN_A_ROW = 3  # a process stops after this many trials in a row found nothing to do


# A search stops (exit 1, with the reason) after this many trials in a row failed, or after
# this many candidates in a row were rejected before training (over a cap).
FAILURES_IN_A_ROW = 5


REJECTIONS_IN_A_ROW = 200


class ScheduleGuard:
    """Optuna callback: after each trial, asks the schedule what comes next (over every
    process): stops the study when nothing is left, waits while other processes' trials
    run and nothing can start before they end (the promotions they may unlock)."""

    def __init__(self, cfg: SearchConfig, budget: TimeBudget | None, poll: float = 2.0) -> None:
        self.cfg, self.budget, self.poll = cfg, budget, poll
        self.schedule = cfg.schedule
        self.idle = 0  # trials in a row that found nothing to do
        self.stopped = ""  # why the search stopped before the schedule's end, if it did
        self.race_due = False  # the time budget left only the race's time
        self.epochs = (
            EpochBudget(cfg.budget_epochs * cfg.schedule.target.image_epochs, plan(cfg))
            if cfg.budget_epochs
            else None
        )

    def sampling_open(self, trials: list[FrozenTrial]) -> bool | None:
        """None: --trials alone decides; else whether the budgets take another candidate."""
        if self.budget is None and self.epochs is None:
            return None
        within = self.budget is None or self.budget.sampling_open(trials, time.time())
        within = within and (self.epochs is None or self.epochs.sampling_open(trials))
        return within and sum(1 for t in trials if rung0_used(t)) < self.cfg.trials

    def job(self, study: optuna.Study):
        trials = study.get_trials(deepcopy=False)
        return self.schedule.next_job(
            trials, sampling_open=self.sampling_open(trials), trials_wanted=self.cfg.trials
        )

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.after(study, trial)

    def after(self, study: optuna.Study, trial: FrozenTrial, *, wait: bool = True) -> None:
        """After ``trial``: stop the study, or wait for other processes' trials (``wait``
        False: not while this process has trainings in flight, which may be what the
        schedule waits for; ``search.study.at_once``)."""
        self.idle = self.idle + 1 if trial.user_attrs.get("idle") else 0
        if self.idle >= IDLE_IN_A_ROW:  # the schedule and the objective disagree: do not spin
            self.stopped = "processes kept finding nothing to do"
            study.stop()
            return
        if self.budget is not None and self.budget.race_due(
            study.get_trials(deepcopy=False), time.time()
        ):
            self.race_due = True  # the race at the end needs what is left of the time budget
            study.stop()
            return
        job = self.job(study)
        waited = 0.0
        while job.kind == "wait" and wait:
            # a trial whose process died stops beating: fail it, and its copy is queued
            fail_stale_trials(study)
            if waited > self.patience(study):
                self.stopped = (
                    f"waited {waited:.0f} s for trials other processes run "
                    f"({', '.join(str(t.number) for t in _running(study))})"
                )
                study.stop()
                return
            time.sleep(self.poll)
            waited += self.poll
            job = self.job(study)
        if job.kind == "done":
            study.stop()

    def patience(self, study: optuna.Study) -> float:
        """How long to wait for other processes' trials: three times the longest trial yet,
        at least ten minutes (then the search stops; --resume continues it)."""
        longest = max(
            (float(t.user_attrs.get("wall_time_s") or 0) for t in study.get_trials(deepcopy=False)),
            default=0.0,
        )
        return max(600.0, 3 * longest)


def fail_stale_trials(study: optuna.Study) -> None:
    """Optuna's ``fail_stale_trials``, without its ExperimentalWarning in the progress table
    (silenced for this call only)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


class FailureGuard:
    """Optuna callback: stops the study after ``limit`` failed trials in a row."""

    def __init__(self, limit: int = FAILURES_IN_A_ROW) -> None:
        self.limit = limit
        self.failed: list[FrozenTrial] = []

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.state == TrialState.FAIL:
            self.failed.append(trial)
            if self.tripped:
                study.stop()
        elif trial.state in FINISHED:
            self.failed.clear()

    @property
    def tripped(self) -> bool:
        return len(self.failed) >= self.limit

    def error(self) -> SearchError:
        numbers = ", ".join(str(t.number) for t in self.failed)
        last = self.failed[-1].user_attrs.get("error", "no reason recorded")
        return SearchStopped(
            f"{len(self.failed)} trials failed in a row (trials {numbers}); the last: {last}. "
            "Finished trials are kept: fix the cause, then continue with --resume"
        )


class RejectionGuard:
    """Optuna callback: stops the study after ``limit`` candidates in a row were rejected
    before training. Rejections do not count towards ``--trials`` (the space is not narrowed
    to make candidates fit), so caps that almost no structure fits would otherwise sample on
    for ever."""

    def __init__(self, limit: int = REJECTIONS_IN_A_ROW) -> None:
        self.limit = limit
        self.in_a_row = 0
        self.last = ""

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.user_attrs.get("reference"):
            return
        if is_rejected(trial):
            self.in_a_row += 1
            self.last = str(trial.user_attrs["rejected"])
            if self.tripped:
                study.stop()
        elif trial.state in FINISHED:
            self.in_a_row = 0

    @property
    def tripped(self) -> bool:
        return self.in_a_row >= self.limit

    def error(self) -> SearchError:
        return SearchStopped(
            f"{self.in_a_row} candidates in a row were over a cap before training (the last: "
            f"{self.last}); the caps leave almost nothing of the space. Finished trials are "
            "kept: raise --budget, --max-macs or --max-activation-kb in a new search"
        )


def _running(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
