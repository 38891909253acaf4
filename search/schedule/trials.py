"""What a trial of the study is, read from what it stores: its rung, a reference network or a
searched candidate, sampled or promoted, lost (interrupted, its process died) or failed on its
own, and the promotion it holds. Every process reads the same study, so these are the shared
vocabulary of the schedule, the budgets, the reports and a resume."""

from __future__ import annotations

from collections.abc import Iterable

from optuna.trial import FrozenTrial, TrialState

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def rung_of(trial: FrozenTrial) -> int:
    """The rung a trial was trained at (0 for a run made before rungs)."""
    return int(trial.user_attrs.get("rung") or 0)


def is_reference(trial: FrozenTrial) -> bool:
    return bool(trial.user_attrs.get("reference"))


def is_idle(trial: FrozenTrial) -> bool:
    """A trial that found nothing to do (several processes raced for the last job)."""
    return bool(trial.user_attrs.get("idle"))


def is_searched(trial: FrozenTrial) -> bool:
    """A candidate of the search (any rung): not a reference network, not an idle trial."""
    return not is_reference(trial) and not is_idle(trial)


def promoted_from(trial: FrozenTrial) -> int | None:
    """The trial a promotion repeats at the next rung (None for a sampled candidate)."""
    source = trial.user_attrs.get("promoted_from")
    return None if source is None else int(source)


def is_lost(trial: FrozenTrial) -> bool:
    """A failed trial that says nothing against its candidate: interrupted (Ctrl-C), or its
    process died (failed by the heartbeat, which records no error, or found running on
    ``--resume``). Its candidate is trained again; a trial that failed on its own is not."""
    attrs = trial.user_attrs
    return trial.state == TrialState.FAIL and (
        attrs.get("interrupted") is not None or "error" not in attrs
    )


def claims(trials: Iterable[FrozenTrial]) -> dict[int, int]:
    """Promoted trial number -> the rung it was promoted to, for every promotion that holds
    its slot: queued, running, finished, or failed on its own. A lost promotion
    (``is_lost``) holds none; its queued copy, if there is one, holds it. One promotion takes
    one slot, however many trials its processes left behind."""
    out: dict[int, int] = {}
    for t in trials:
        source = promoted_from(t)
        if source is not None and is_searched(t) and not is_lost(t):
            out[source] = rung_of(t)
    return out


def is_sampled(trial: FrozenTrial) -> bool:
    """A candidate the sampler proposed: a searched trial at rung 0 (what a sampler learns
    from; a promotion repeats a candidate at another fidelity)."""
    return is_searched(trial) and rung_of(trial) == 0 and promoted_from(trial) is None


def was_rejected(trial: FrozenTrial) -> bool:
    return bool(trial.user_attrs.get("rejected"))


def rung0_used(trial: FrozenTrial) -> bool:
    """A rung-0 slot used: a sampled candidate trained (finished) or being trained; a fresh
    running trial that has not said what it is yet counts as one too."""
    if not is_searched(trial) or rung_of(trial) != 0 or promoted_from(trial) is not None:
        return False
    if trial.state in FINISHED:
        return not was_rejected(trial)
    return trial.state in (TrialState.RUNNING, TrialState.WAITING)


def lineage(trial: FrozenTrial) -> int:
    """The rung-0 trial a candidate started as (itself for a sampled one)."""
    candidate = trial.user_attrs.get("candidate")
    return trial.number if candidate is None else int(candidate)


def verify_seeds(n: int, used: int) -> list[int]:
    """The first ``n`` seeds other than ``used``, the one the search trained with."""
    return [s for s in range(n + 1) if s != used][:n]
