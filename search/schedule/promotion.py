"""The fidelity schedule: rungs from cheap to the target recipe, and who is promoted.

A search is given a target fidelity: the recipe's epochs on the training split (or its
subset). With ``--rungs R`` it explores at ``R - 1`` cheaper rungs first: rung ``r`` costs
``1 / eta ** (R - 1 - r)`` of the target in image-epochs (epochs are cut first, down to one,
then images: the first images of a fixed permutation of the training split, so a rung's
images are a subset of the next rung's). Candidates are sampled at rung 0; the promotion rule
moves the best of each size band up one rung at a time (asynchronous successive halving:
a candidate is promoted as soon as it is among the top ``1 / eta`` of what finished at its
rung, so no process waits for a rung to fill); the last rung is the target, where the front
is verified with new seeds.

Promotion *within size bands*: a candidate's band rank is how many candidates at its rung
with between ``params / band`` and ``params * band`` parameters reached a higher validation
accuracy there. The rung's top ``floor(n / eta)`` by (band rank, accuracy) move up, ``n``
being the candidates that finished at the rung (``ceil`` once the rung is closed: nothing
more will arrive), so the best network of every size moves up before a second-best of a
crowded size does, and the front at the target spans the cap.

Everything is read from the study (each trial stores its ``rung`` and, when promoted, the
trial it was ``promoted_from``), so several processes share one schedule, and a resumed search
continues it: ``Schedule.next_job`` is a pure function of the study's trials.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from optuna.trial import FrozenTrial, TrialState

from budgetnas.search.errors import SearchError

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
MIN_IMAGES = 500  # the smallest training subset a rung uses
# Optimizer steps a rung below the target takes at least, where the rungs are planned for the
# user (--rungs not given): with fewer, candidates are still at chance level and a rung's
# ranking is a lottery. Measured with the default recipe (benchmarks/chance.py, MNIST at 28x28
# and at 8x8 on 1,293 images, 6-8 networks each): after 20 steps 1-2 networks were within 1.5x
# of chance, after 40 none (median 42% and 50%).
MIN_RUNG_STEPS = 40
BAND = 1.5  # the size band of the promotion rule (as the banded pruner's)


@dataclass(frozen=True)
class Rung:
    """One fidelity: ``epochs`` over the first ``images`` images of the training split."""

    index: int
    epochs: int
    images: int

    @property
    def image_epochs(self) -> int:
        return self.epochs * self.images

    def label(self) -> str:
        return f"{self.epochs} ep x {self.images:,} img"


def rung_steps(epochs: int, images: int, batch: int) -> int:
    """Optimizer steps of ``epochs`` over ``images`` at ``batch`` (the trainer drops the
    ragged last batch; a set smaller than a batch is one step)."""
    return epochs * max(1, images // batch)


def plan_rungs(
    *, epochs: int, images: int, rungs: int, eta: int, min_steps: int = 0, batch: int = 1
) -> tuple[Rung, ...]:
    """``rungs`` fidelities, each ``eta`` times the one before in image-epochs (as near as
    whole epochs and images allow), the last the target ``epochs`` x ``images``. A rung below
    the target takes at least ``min_steps`` optimizer steps at ``batch``: more images, then
    whole epochs on all of them (small data)."""
    if rungs < 1:
        raise SearchError(f"--rungs must be at least 1, got {rungs}")
    if eta < 2:
        raise SearchError(f"--eta must be at least 2, got {eta}")
    out = []
    for r in range(rungs):
        share = float(eta) ** -(rungs - 1 - r)
        e = max(1, round(epochs * share))
        n = min(images, max(MIN_IMAGES, round(epochs * images * share / e)))
        if r < rungs - 1 and rung_steps(e, n, batch) < min_steps:
            n = min(images, max(n, math.ceil(min_steps / e) * batch))
            e = max(e, math.ceil(min_steps / rung_steps(1, n, batch)))
        out.append(Rung(r, e, n))
    for low, high in zip(out, out[1:], strict=False):
        if high.image_epochs <= low.image_epochs:
            raise SearchError(
                f"--rungs {rungs} with --eta {eta} leaves no room below the target "
                f"({epochs} ep x {images:,} img): rung {low.index} would be "
                f"{low.label()}, rung {high.index} {high.label()}; use fewer rungs"
            )
    return tuple(out)


# ---- what a trial is -----------------------------------------------------------------------


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


# ---- the promotion rule ----------------------------------------------------------------------


def band_ranks(trials: Sequence[FrozenTrial], band: float = BAND) -> dict[int, int]:
    """Trial number -> how many of ``trials`` (completed, one rung) within ``band`` of its
    parameter count have a higher validation accuracy."""
    points = [(t.number, float(t.user_attrs["params"]), _acc(t)) for t in trials]
    width = math.log(band)
    return {
        n: sum(1 for _, q, b in points if abs(math.log(q / p)) <= width and b > a)
        for n, p, a in points
    }


def _acc(trial: FrozenTrial) -> float:
    return float(trial.values[0])


def promotion_order(trials: Sequence[FrozenTrial], band: float = BAND) -> list[FrozenTrial]:
    """Completed trials of one rung in the order they are promoted: band rank, then
    validation accuracy (higher first), then fewer parameters, then the earlier trial."""
    ranks = band_ranks(trials, band)
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
            finished = [t for t in here if t.state in FINISHED and not _rejected(t)]
            complete = [t for t in finished if t.state == TrialState.COMPLETE]
            # at most the quota moves up, ever: a promotion made early is not taken back, so
            # a newcomer to the top takes only a slot still free
            free = quota(len(finished), self.eta, closed=closed) - sum(
                1 for to in claimed.values() if to == r + 1
            )
            order = [t for t in promotion_order(complete, self.band) if t.number not in claimed]
            pending.append(order[: max(0, free)])
            closed = closed and not pending[-1] and not any(rung_of(t) == r + 1 for t in running)
        for r in reversed(range(len(pending))):  # the highest rung first: the target sooner
            if pending[r]:
                return Job("promote", r + 1, pending[r][0])
        if sampling_open:
            return SAMPLE
        return WAIT if running else DONE


def _rejected(trial: FrozenTrial) -> bool:
    return bool(trial.user_attrs.get("rejected"))


def rung0_used(trial: FrozenTrial) -> bool:
    """A rung-0 slot used: a sampled candidate trained (finished) or being trained; a fresh
    running trial that has not said what it is yet counts as one too."""
    if not is_searched(trial) or rung_of(trial) != 0 or promoted_from(trial) is not None:
        return False
    if trial.state in FINISHED:
        return not _rejected(trial)
    return trial.state in (TrialState.RUNNING, TrialState.WAITING)


def lineage(trial: FrozenTrial) -> int:
    """The rung-0 trial a candidate started as (itself for a sampled one)."""
    candidate = trial.user_attrs.get("candidate")
    return trial.number if candidate is None else int(candidate)


# ---- compute budgets: wall time, or image-epochs --------------------------------------------

MAX_VERIFIED = 5  # front members verified with new seeds at the end of a search


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
    and the race at the end: the front (at most ``MAX_VERIFIED``) with ``verify_seeds``
    seeds (weighed by ``front_weight`` in ``work``: a front member's image-epoch in a
    candidate's) and the reference networks at the target with ``reference_seeds`` (each
    weighed by its ``reference_weight`` and its ``reference_pending``: the share not in the
    results cache)."""

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
        """The race at the end, as a fixed verification of the front and the references."""
        searched = [t for t in trials if is_searched(t) and t.state != TrialState.FAIL]
        n0 = sum(1 for t in searched if rung0_used(t)) + extra
        rungs = self.schedule.rungs
        top = math.ceil(n0 / self.schedule.eta ** (len(rungs) - 1)) if n0 else 0
        seeds = self.verify_seeds if self.reference_seeds is None else self.reference_seeds
        verified = min(MAX_VERIFIED, top) * self.verify_seeds * front_weight
        verified += seeds * self.references_cost()
        return round(verified * self.schedule.target.image_epochs)


def _rate(trials: Iterable[FrozenTrial], weight: Callable[[FrozenTrial], float]) -> float | None:
    """Seconds per image-epoch over the finished, timed trials of ``trials`` (each trial's
    image-epochs weighed by ``weight``); None when none was timed."""
    seconds = image_epochs = 0.0
    for t in trials:
        curve, wall = t.user_attrs.get("val_curve") or [], t.user_attrs.get("wall_time_s")
        images = t.user_attrs.get("train_images")
        cached = t.user_attrs.get("cached")  # took no time here: no measure of the rate
        if t.state in FINISHED and wall and images and curve and not cached:
            seconds += float(wall)
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
    the mean candidate."""

    deadline: float
    plan: Plan
    workers: int = 1
    overhead_s: float = 0.0

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
        work = self.plan.work(trials, extra=extra, front_weight=self.front_weight(trials))
        return rate * work / self.workers + self.overhead_s

    def race_seconds(self, trials: Sequence[FrozenTrial]) -> float | None:
        """Seconds the race at the end is planned to take (over the workers), with the
        overhead; None before any trial has been timed."""
        rate = self.seconds_per_image_epoch(trials)
        if rate is None:
            return None
        work = self.plan.race_work(trials, front_weight=self.front_weight(trials))
        return rate * work / self.workers + self.overhead_s

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
