"""Several candidates trained side by side in one process (``--concurrent K``).

One small network's step leaves a GPU mostly idle; K trainings in flight in one process keep
it busy (``trainers.many.AtOnce``: each its own stream and graphs, their steps in turn). The
loop here is Optuna's ask and tell around it: while fewer than K trainings are in flight and
the schedule has a job (a new candidate, a promotion), it asks for a trial and the objective
begins it (a rejection, a reuse or a cached result ends it at once); then every training in
flight takes one step; a training that ends (finished, pruned by its pruner between epochs,
failed) is told, and the callbacks (progress, guards, the schedule) see it as after
``Study.optimize``. Pruning, promotion, the cache and the time budget work as for one trial
at a time.

What one process at a time decides alone may differ: a trial begun while others are still
in flight sees the study without their results, so a pruner's median, the promotions open
and the sampler's model (TPE's, NSGA-II's) can differ from a one-at-a-time run. A random
sampler on one rung, unpruned, samples and trains the same trials to the same accuracies
(tests/search/test_at_once.py). On a CPU nothing runs at once: K > 1 takes as long as one
at a time.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.trial import FrozenTrial, TrialState

from budgetnas.search.sampling.objective import Objective, Pending
from budgetnas.search.study.guards import ScheduleGuard, fail_stale_trials
from budgetnas.trainers.many import AtOnce

Callback = Callable[[optuna.Study, FrozenTrial], None]


class _Stoppable:
    """The study as the callbacks see it: ``stop()`` ends the asking (Optuna's own
    ``Study.stop`` works only inside ``Study.optimize``)."""

    def __init__(self, study: optuna.Study) -> None:
        self._study = study
        self.stopped = False

    def stop(self) -> None:
        self.stopped = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)


def optimize_at_once(
    study: optuna.Study,
    objective: Objective,
    *,
    concurrent: int,
    callbacks: Sequence[Callback],
    schedule: ScheduleGuard,
    timeout: float | None = None,
    graphs: bool | None = None,
) -> None:
    """Run ``objective``'s trials of ``study``, up to ``concurrent`` trainings in flight,
    until a callback stops the study (the schedule done, a guard), or ``timeout`` seconds
    have passed (no trial begins after it). A failed trial is told FAIL and the search goes
    on (as ``optimize(catch=(Exception,))``); a Ctrl-C marks every trial in flight
    interrupted (``--resume`` trains it again) and is raised."""
    if concurrent < 1:
        raise ValueError(f"concurrent must be at least 1, got {concurrent}")
    view = _Stoppable(study)
    start = time.time()
    many = AtOnce(device=objective.device, graphs=graphs)
    flying: dict[int, Pending] = {}
    load: dict[int, list[int]] = {}  # per training: trainings in flight summed over rounds, rounds
    untold: dict[int, optuna.Trial] = {}  # asked or ended, not yet told (a Ctrl-C tells them)
    told_since = [True]  # a trial was told since the schedule was last asked for a job

    def told(trial: optuna.Trial, outcome: tuple[Any, TrialState]) -> None:
        # skip_if_finished: a trial another process failed as stale meanwhile stays failed
        frozen = study.tell(trial, outcome[0], state=outcome[1], skip_if_finished=True)
        untold.pop(trial.number, None)
        told_since[0] = True
        for callback in callbacks:
            after = getattr(callback, "after", None)
            if after is not None:  # the schedule does not wait on this process's trainings
                after(view, frozen, wait=not flying)
            else:
                callback(view, frozen)

    storage = study._storage  # Optuna gives no public handle on a study's storage
    interval = storage.get_heartbeat_interval() if isinstance(storage, BaseHeartbeat) else None
    beaten = [time.time()]

    def ask() -> optuna.Trial:
        """A new trial, after failing those of dead processes (as ``optimize`` does)."""
        if interval:
            fail_stale_trials(study)
        with warnings.catch_warnings():  # optimize beats in a thread per trial; this loop beats
            warnings.filterwarnings("ignore", message="Heartbeat of storage", category=UserWarning)
            trial = study.ask()
        untold[trial.number] = trial
        if interval:  # its first beat now: a trial with none is never found stale
            storage.record_heartbeat(trial._trial_id)
        return trial

    def beat() -> None:
        """Every trial in flight beats (a step is short: between steps is often enough)."""
        if interval and time.time() - beaten[0] >= interval / 2:
            for step in flying.values():
                storage.record_heartbeat(step.trial._trial_id)
            beaten[0] = time.time()

    def may_begin() -> bool:
        if view.stopped or len(flying) >= concurrent:
            return False
        if timeout is not None and time.time() - start >= timeout:
            return False
        if not flying:
            return True
        # with trainings in flight, a trial begins only for a job (a queued trial, a new
        # candidate, a promotion); while the schedule waits (for promotions those trainings
        # may earn) they train on, and the schedule is asked again once one of them is told
        if not told_since[0]:
            return False
        if schedule.job(study).kind in ("queued", "sample", "promote"):
            return True
        told_since[0] = False  # nothing to begin until a trial in flight is told
        return False

    def begin(trial: optuna.Trial) -> Any:
        """The trial's values if it ends at once; else its training joins those in flight."""
        step = objective.begin(trial)
        if not isinstance(step, Pending):
            return step
        try:
            k = many.add(step.job)  # building its model may fail (out of memory): its failure
        except BaseException:
            objective.ended(step)
            raise
        flying[k], load[k] = step, [0, 0]
        return _STARTED

    try:
        while True:
            while may_begin():
                trial = ask()
                outcome = _outcome(objective, trial, lambda trial=trial: begin(trial))
                if outcome[0] is not _STARTED:  # rejected, reused, pruned on a replay, failed
                    told(trial, outcome)
            if not flying:
                return
            many.round()
            beat()
            for k in flying:
                load[k][0] += len(flying)
                load[k][1] += 1
            for k in [k for k in flying if many.results[k] is not None]:
                step, (summed, rounds) = flying.pop(k), load.pop(k)
                step.at_once = summed / max(1, rounds)
                result = many.take(k)
                outcome = _outcome(objective, step.trial, _concluded(objective, step, result))
                told(step.trial, outcome)
    except BaseException:
        # a Ctrl-C (or a failure of the loop itself): every trial not told is interrupted
        for step in flying.values():
            objective.ended(step)
            untold[step.trial.number] = step.trial
        for trial in untold.values():
            trial.set_user_attr("interrupted", "interrupted (Ctrl-C)")
            study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        raise


_STARTED = object()  # begin's answer for a trial whose training joined those in flight


def _outcome(
    objective: Objective, trial: optuna.Trial, run: Callable[[], Any]
) -> tuple[Any, TrialState]:
    """``run()``'s values and COMPLETE, or None and PRUNED or FAIL for what it raised (a
    failure recorded on the trial by ``Objective.recording``, as ``Study.optimize`` with
    ``catch=(Exception,)`` goes on after it)."""
    try:
        with objective.recording(trial):
            return run(), TrialState.COMPLETE
    except optuna.TrialPruned:
        return None, TrialState.PRUNED
    except Exception:
        return None, TrialState.FAIL


def _concluded(objective: Objective, step: Pending, result: Any) -> Callable[[], Any]:
    """What ``tell`` runs for a training that ended with ``result``: its values recorded, or
    its pruning or failure raised again (recorded on the trial by ``Objective.recording``)."""

    def conclude() -> Any:
        if isinstance(result, BaseException):
            objective.ended(step)
            raise result
        return objective.finish(step, result)

    return conclude
