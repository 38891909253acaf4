"""Who is promoted: the schedule over the fidelity rungs (``search.schedule.rungs``).

Candidates are sampled at rung 0; the promotion rule moves the best of each size band up one
rung at a time (asynchronous successive halving: a candidate is promoted as soon as it is
among the top ``1 / eta`` of what finished at its rung, so no process waits for a rung to
fill); the last rung is the target, where the race at the end of a search starts.

Promotion *within size bands*: a candidate's band rank is how many candidates at its rung
with between ``params / band`` and ``params * band`` parameters reached a higher validation
accuracy there. The rung's top ``floor(n / eta)`` by (band rank, accuracy) move up, ``n``
being the candidates that finished at the rung (``ceil`` once the rung is closed: nothing
more will arrive), so the best network of every size moves up before a second-best of a
crowded size does, and the front at the target spans the cap. A band does not cross an aim
(``search.schedule.aims``: a share of a seed network's parameters), so the best network under
each aim ranks first in its band, as the best of each band does, whatever the larger networks
beside it read.

Everything is read from the study (each trial stores its ``rung`` and, when promoted, the
trial it was ``promoted_from``), so several processes share one schedule, and a resumed search
continues it: ``Schedule.next_job`` is a pure function of the study's trials.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from optuna.trial import FrozenTrial, TrialState

from budgetnas.search.schedule.rungs import Rung
from budgetnas.search.schedule.trials import (
    FINISHED,
    claims,
    is_idle,
    is_searched,
    rung0_used,
    rung_of,
    was_rejected,
)

BAND = 1.5  # the size band of the promotion rule (as the banded pruner's)


# ---- what a trial is -----------------------------------------------------------------------


# ---- the promotion rule ----------------------------------------------------------------------


def band_ranks(
    trials: Sequence[FrozenTrial], band: float = BAND, lines: Sequence[int] = ()
) -> dict[int, int]:
    """Trial number -> how many of ``trials`` (completed, one rung) within ``band`` of its
    parameter count, and on its side of every one of ``lines`` (parameter counts: the aims,
    ``search.schedule.aims``; at or under a line is its lower side), have a higher validation
    accuracy."""
    points = [(t.number, float(t.user_attrs["params"]), _acc(t)) for t in trials]
    width = math.log(band)

    def side(p: float) -> tuple[bool, ...]:
        return tuple(p <= line for line in lines)

    return {
        n: sum(
            1
            for _, q, b in points
            if abs(math.log(q / p)) <= width and b > a and side(q) == side(p)
        )
        for n, p, a in points
    }


def _acc(trial: FrozenTrial) -> float:
    return float(trial.values[0])


def promotion_order(
    trials: Sequence[FrozenTrial], band: float = BAND, lines: Sequence[int] = ()
) -> list[FrozenTrial]:
    """Completed trials of one rung in the order they are promoted: band rank (``lines``:
    the aims its bands keep to), then validation accuracy (higher first), then fewer
    parameters, then the earlier trial."""
    ranks = band_ranks(trials, band, lines)
    return sorted(
        trials,
        key=lambda t: (ranks[t.number], -_acc(t), int(t.user_attrs["params"]), t.number),
    )


def quota(finished: int, eta: int, *, closed: bool) -> int:
    """How many of ``finished`` candidates of a rung move up: the top ``1/eta``, rounded down
    while more may arrive, up once the rung is closed."""
    return math.ceil(finished / eta) if closed else finished // eta


# ---- the next job ------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """What a process does next: run a ``queued`` trial, ``sample`` a new candidate at rung
    0, ``promote`` trial ``source`` to ``rung``, ``wait`` for other processes, or nothing more
    (``done``)."""

    kind: str  # "queued" | "sample" | "promote" | "wait" | "done"
    rung: int = 0
    source: FrozenTrial | None = None


QUEUED, SAMPLE, WAIT, DONE = Job("queued"), Job("sample"), Job("wait"), Job("done")


@dataclass(frozen=True)
class Schedule:
    rungs: tuple[Rung, ...]
    eta: int = 3
    band: float = BAND
    lines: tuple[int, ...] = ()  # the aims the size bands keep to (``search.schedule.aims``)

    @property
    def target(self) -> Rung:
        return self.rungs[-1]

    def label(self) -> str:
        return " -> ".join(r.label() for r in self.rungs) + (
            f" (eta {self.eta})" if len(self.rungs) > 1 else ""
        )

    def next_job(
        self,
        trials: Iterable[FrozenTrial],
        *,
        sampling_open: bool | None = None,
        trials_wanted: int | None = None,
        exclude: int | None = None,
    ) -> Job:
        """The job to do next, from the study's ``trials``: a promotion first (the highest
        rung first), else a new sample while rung 0 takes more (``sampling_open``, or fewer
        than ``trials_wanted`` there), else ``wait`` while other trials run, else ``done``.
        ``exclude``: the asking trial itself (running, not yet anything)."""
        trials = [t for t in trials if t.number != exclude]
        if any(t.state == TrialState.WAITING and not is_idle(t) for t in trials):
            return QUEUED  # queued trials (references, retries) first: Optuna pops them
        searched = [t for t in trials if is_searched(t)]
        alive = [t for t in searched if t.state != TrialState.FAIL]
        running = [t for t in alive if t.state == TrialState.RUNNING]
        # a promotion is claimed by its trial: one that failed on its own is not tried again;
        # a lost one (interrupted, its process died) is, by its queued copy or anew
        claimed = claims(searched)
        if sampling_open is None:
            done0 = sum(1 for t in alive if rung0_used(t))
            sampling_open = trials_wanted is not None and done0 < trials_wanted
        # rung r is closed when nothing more will arrive there: rung 0 once sampling has
        # stopped and nothing runs there; rung r + 1 once rung r is closed, promoted in full
        # (the rounded-up quota) and nothing runs at r + 1
        closed = not sampling_open and not any(rung_of(t) == 0 for t in running)
        pending: list[list[FrozenTrial]] = []
        for r in range(len(self.rungs) - 1):
            here = [
                t for t in alive if rung_of(t) == r and t.user_attrs.get("duplicate_of") is None
            ]
            finished = [t for t in here if t.state in FINISHED and not was_rejected(t)]
            complete = [t for t in finished if t.state == TrialState.COMPLETE]
            # at most the quota moves up, ever: a promotion made early is not taken back, so
            # a newcomer to the top takes only a slot still free
            free = quota(len(finished), self.eta, closed=closed) - sum(
                1 for to in claimed.values() if to == r + 1
            )
            ranked = promotion_order(complete, self.band, self.lines)
            order = [t for t in ranked if t.number not in claimed]
            pending.append(order[: max(0, free)])
            closed = closed and not pending[-1] and not any(rung_of(t) == r + 1 for t in running)
        for r in reversed(range(len(pending))):  # the highest rung first: the target sooner
            if pending[r]:
                return Job("promote", r + 1, pending[r][0])
        if sampling_open:
            return SAMPLE
        return WAIT if running else DONE


# ---- compute budgets: wall time, or image-epochs --------------------------------------------
