"""Compute budgets: ``--budget-time`` (wall time) and ``--budget-epochs`` (trainings at the
target), planned as the work a search is committed to: its candidates, their expected
promotions and the race at the end (``Plan``)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from optuna.trial import FrozenTrial, TrialState

from budgetnas.search.schedule.promotion import Schedule
from budgetnas.search.schedule.rungs import Rung
from budgetnas.search.schedule.trials import (
    FINISHED,
    is_reference,
    is_searched,
    rung0_used,
    rung_of,
)

MAX_VERIFIED = 5  # front members verified with new seeds at the end of a search

# the most of --budget-time the race at the end is planned to take while candidates are
# sampled: on a slow CPU a target training takes minutes, and the race's full plan (every
# entrant's seeds and the seed networks') took 60% of a 45-minute 10K search, leaving 30
# candidates; above this share the race spends what is left in its own order (the verdict's
# seeds first, ``search.verification.seed_order``) and stops at the deadline. What a verdict
# needs is always kept: the seed networks' seeds, the answer's and each aim's best's
RACE_SHARE = 0.4


def trained_image_epochs(trials: Sequence[FrozenTrial], rungs: Sequence[Rung] | None = None) -> int:
    """Image-epochs the study's ended trials trained: every epoch a trial reported, whether
    it completed, was pruned (up to its cut) or failed midway; a reused result (from an
    identical trial or from the results cache) trained nothing. ``rungs``: the images of a
    trial's rung where it does not say how many it trained on (a pruned trial of a study
    made before they said)."""
    total = 0
    for t in trials:
        if (
            t.state not in (*FINISHED, TrialState.FAIL)
            or t.user_attrs.get("duplicate_of") is not None
            or t.user_attrs.get("cached")  # reused from the results cache: trained elsewhere
        ):
            continue
        curve, images = t.user_attrs.get("val_curve") or [], t.user_attrs.get("train_images")
        if not images and curve and rungs is not None and rung_of(t) < len(rungs):
            images = rungs[rung_of(t)].images
        if images:
            total += len(curve) * int(images)
    return total


@dataclass(frozen=True)
class Plan:
    """The work a search is committed to, in image-epochs: what sampling ``extra`` more
    candidates adds (themselves at rung 0, their expected promotions: a share ``1 / eta ** r``
    of rung 0 reaches rung r), plus the promotions its candidates are still expected to make
    and the race at the end: the front (at most ``MAX_VERIFIED``) and the best network under
    each aim with ``verify_seeds`` seeds (weighed by ``front_weight`` in ``work``: a front
    member's image-epoch in a candidate's) and the reference networks at the target with
    ``reference_seeds`` (each weighed by its ``reference_weight`` and its
    ``reference_pending``: the share not in the results cache)."""

    schedule: Schedule
    verify_seeds: int = 3
    references_at_target: int = 0
    reference_seeds: int | None = None  # None: verify_seeds
    # the cost of a reference network's image-epoch in a candidate's (seed networks train
    # slower than candidates of their size; ``search.yardsticks`` times them): one for all,
    # or per reference network (zoo key -> weight)
    reference_weight: float | Mapping[str, float] = 1.0
    # the share of the references' verification still to train (the rest the results cache
    # holds: it costs nothing): one for all, or per reference network
    reference_pending: float | Mapping[str, float] = 1.0

    def weight_of(self, key: str | None) -> float:
        """A reference network's image-epoch in a candidate's (``key``: its zoo key)."""
        w = self.reference_weight
        if isinstance(w, Mapping):
            return float(w.get(key, statistics.fmean(w.values()) if w else 1.0))
        return float(w)

    def references_cost(self) -> float:
        """The references' verification per seed, in target trainings of a candidate."""
        w, p = self.reference_weight, self.reference_pending
        if not isinstance(w, Mapping):
            pending = statistics.fmean(p.values()) if isinstance(p, Mapping) and p else p
            return self.references_at_target * float(w) * float(pending)
        return sum(
            float(weight) * float(p.get(key, 1.0) if isinstance(p, Mapping) else p)
            for key, weight in w.items()
        )

    def work(
        self, trials: Sequence[FrozenTrial], *, extra: int = 0, front_weight: float = 1.0
    ) -> int:
        return self.search_work(trials, extra=extra) + self.race_work(
            trials, extra=extra, front_weight=front_weight
        )

    def search_work(self, trials: Sequence[FrozenTrial], *, extra: int = 0) -> int:
        """``extra`` more candidates at rung 0 and the promotions still expected."""
        searched = [t for t in trials if is_searched(t) and t.state != TrialState.FAIL]
        n0 = sum(1 for t in searched if rung0_used(t)) + extra
        eta, rungs = self.schedule.eta, self.schedule.rungs
        work = extra * rungs[0].image_epochs
        for rung in rungs[1:]:
            expected = math.ceil(n0 / eta**rung.index) if n0 else 0
            started = sum(1 for t in searched if rung_of(t) == rung.index)
            work += max(0, expected - started) * rung.image_epochs
        return work

    def race_work(
        self, trials: Sequence[FrozenTrial], *, extra: int = 0, front_weight: float = 1.0
    ) -> int:
        """The race at the end, as a fixed verification of the front, of the best network
        under each aim (``Schedule.lines``: the seed networks' aims) and of the references."""
        searched, _, references = self.race_parts(trials, extra=extra, front_weight=front_weight)
        return round(searched + references)

    def race_parts(
        self, trials: Sequence[FrozenTrial], *, extra: int = 0, front_weight: float = 1.0
    ) -> tuple[float, float, float]:
        """The race's work (image-epochs) in three parts: the searched networks', the least
        of it a verdict needs (the answer and the best under each aim, ``verify_seeds``
        each), the reference networks'."""
        searched = [t for t in trials if is_searched(t) and t.state != TrialState.FAIL]
        n0 = sum(1 for t in searched if rung0_used(t)) + extra
        rungs = self.schedule.rungs
        top = math.ceil(n0 / self.schedule.eta ** (len(rungs) - 1)) if n0 else 0
        seeds = self.verify_seeds if self.reference_seeds is None else self.reference_seeds
        # and the best under each aim, when the seed networks race; no more networks than
        # reach the target (an aim's best is often a member of the front already)
        aimed = len(self.schedule.lines) if self.reference_seeds != 0 else 0
        one = self.verify_seeds * front_weight * self.schedule.target.image_epochs
        networks = min(MAX_VERIFIED + aimed, top)
        references = seeds * self.references_cost() * self.schedule.target.image_epochs
        return networks * one, min(1 + aimed, networks) * one, references


def _rate(trials: Iterable[FrozenTrial], weight: Callable[[FrozenTrial], float]) -> float | None:
    """A process's seconds per image-epoch over the finished, timed trials of ``trials``
    (each trial's image-epochs weighed by ``weight``; a trial trained beside others in its
    process, ``at_once``, took its share of its wall time); None when none was timed."""
    seconds = image_epochs = 0.0
    for t in trials:
        curve, wall = t.user_attrs.get("val_curve") or [], t.user_attrs.get("wall_time_s")
        images = t.user_attrs.get("train_images")
        cached = t.user_attrs.get("cached")  # took no time here: no measure of the rate
        if t.state in FINISHED and wall and images and curve and not cached:
            seconds += float(wall) / float(t.user_attrs.get("at_once") or 1.0)
            image_epochs += len(curve) * int(images) * weight(t)
    return seconds / image_epochs if image_epochs else None


@dataclass(frozen=True)
class TimeBudget:
    """``--budget-time``: sample new candidates while the work they commit the search to
    (``Plan``) fits before ``deadline`` (seconds since the epoch, shared by every process
    through the study), timed at the seconds per image-epoch the study's finished trials
    took, shared over ``workers`` processes, with ``overhead_s`` more for what follows the
    trials (the race's processes starting, the reports). The race's networks are weighed as
    the largest trained so far (``front_weight``): a network near the cap trains slower than
    the mean candidate. ``race_factor``: how much faster the trials ran, several at once in
    a process (``search.study.concurrency``), than the race's one network at a time.
    ``length_s``: the budget's seconds (``--budget-time``); the race is planned to take no
    more than its ``RACE_SHARE`` (the overhead besides), or what its verdict needs where that
    is more, so that the search keeps the rest for its candidates (None: no bound)."""

    deadline: float
    plan: Plan
    workers: int = 1
    overhead_s: float = 0.0
    race_factor: float = 1.0
    length_s: float | None = None

    def _race_seconds(self, trials: Sequence[FrozenTrial], rate: float, *, extra: int = 0) -> float:
        """The race's planned seconds (over the workers, without the overhead): its whole
        plan, bounded by ``RACE_SHARE`` of the budget but never below what the verdict needs
        (the seed networks' seeds, the answer's and each aim's best's ``verify_seeds``)."""
        parts = self.plan.race_parts(trials, extra=extra, front_weight=self.front_weight(trials))
        searched, least, references = (rate * self.race_factor * w / self.workers for w in parts)
        if self.length_s is None:
            return searched + references
        return min(searched + references, max(RACE_SHARE * self.length_s, least + references))

    def seconds_per_image_epoch(self, trials: Sequence[FrozenTrial]) -> float | None:
        """Seconds per candidate image-epoch, over the study's timed trials: a reference
        network's image-epoch counts as its ``plan.weight_of`` of a candidate's (the plan
        weighs the references' verification so), so that the rate is a candidate's from the
        first reference on."""

        def weight(t: FrozenTrial) -> float:
            return self.plan.weight_of(t.user_attrs.get("reference")) if is_reference(t) else 1.0

        return _rate(trials, weight)

    def front_weight(self, trials: Sequence[FrozenTrial]) -> float:
        """A race network's image-epoch in a candidate's: the rate of the searched networks
        at the highest rung reached (the front comes from there), else of the largest third
        of the candidates, over the rate of every candidate (at least 1)."""
        searched = [t for t in trials if is_searched(t) and not t.user_attrs.get("rejected")]
        every = _rate(searched, lambda t: 1.0)
        if not searched or every is None:
            return 1.0
        top = max(rung_of(t) for t in searched)
        high = [t for t in searched if rung_of(t) == top]
        if top == 0:
            sizes = sorted(int(t.user_attrs.get("params") or 0) for t in searched)
            third = sizes[(2 * len(sizes)) // 3]
            high = [t for t in searched if int(t.user_attrs.get("params") or 0) >= third]
        theirs = _rate(high, lambda t: 1.0)
        return max(1.0, theirs / every) if theirs else 1.0

    def remaining(self, trials: Sequence[FrozenTrial], *, extra: int = 0) -> float | None:
        """Seconds of work left (over the workers) if ``extra`` more candidates are sampled;
        None before any trial has been timed."""
        rate = self.seconds_per_image_epoch(trials)
        if rate is None:
            return None
        work = self.plan.search_work(trials, extra=extra)
        race_s = self._race_seconds(trials, rate, extra=extra)
        return rate * work / self.workers + race_s + self.overhead_s

    def race_seconds(self, trials: Sequence[FrozenTrial]) -> float | None:
        """Seconds the race at the end is planned to take (over the workers), with the
        overhead; None before any trial has been timed."""
        rate = self.seconds_per_image_epoch(trials)
        if rate is None:
            return None
        return self._race_seconds(trials, rate) + self.overhead_s

    def race_due(self, trials: Sequence[FrozenTrial], now: float) -> bool:
        """Whether the race must start now to fit before the deadline: no more trials."""
        left = self.race_seconds(trials)
        return left is not None and now + left >= self.deadline

    def sampling_open(self, trials: Sequence[FrozenTrial], now: float) -> bool:
        left = self.remaining(trials, extra=1)
        return left is None or now + left <= self.deadline


@dataclass(frozen=True)
class EpochBudget:
    """``--budget-epochs N``: compute counted in trainings at the target fidelity (``N`` x the
    target's image-epochs, the search's own trials and the final verification together);
    new candidates are sampled while what is trained plus what they commit to fits. Counted,
    not timed: the same on every machine."""

    limit: int  # image-epochs
    plan: Plan

    def sampling_open(self, trials: Sequence[FrozenTrial]) -> bool:
        spent = trained_image_epochs(trials, self.plan.schedule.rungs)
        return spent + self.plan.work(trials, extra=1) <= self.limit


# seconds kept before a deadline for what follows the race: reading every record back and
# writing the reports (measured: under 3 s for a study of 1,600 trials on a 2-core CPU)
END_MARGIN_S = 5.0
