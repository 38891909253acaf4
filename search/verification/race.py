"""The race at the target: which networks get how many new seeds, who is the answer, and how
it stands against the hand-made yardsticks.

A search reads each candidate once at the target, with its own seed; the best reading is
the luckiest as often as the best network (the winner's curse: readings a point apart on
10-class data, a few tenths on MNIST, fall back by that much on new seeds). So the end of a
search is a race (F-race / irace; SMAC's intensification adds seeds to its incumbents the
same way), run on new seeds at the target fidelity:

- **Entrants**: the front at the target (at most ``MAX_VERIFIED`` of it, spread over the
  sizes), the candidates whose reading is within reach of the best reading under a cap
  (``REACH`` reading spreads, at most ``MAX_REACH`` of them per cap) or under an aim
  (``search.schedule.aims``: a share of a yardstick's parameters; ``MAX_AIM_REACH`` per aim),
  and the yardsticks (the seed networks under a cap).
- Every entrant starts with ``RaceRules.start`` new seeds (a yardstick far below the best
  reading, ``Race.far``, with one). Under each cap the *leader* is the
  searched entrant with the best mean validation accuracy; a searched entrant whose interval
  overlaps the leader's gets another seed (so does the leader), up to ``RaceRules.most``; one
  clearly behind (by more than ``Z`` standard errors) stops. A yardstick gets seeds while it
  is level with the leader, until the verdict is clear or it has ``most``.
- The answer under a cap is its leader, with its seed count and spread; it and the
  strongest yardstick under the cap end with at least ``RaceRules.least`` seeds (the
  verdict's).
- Order (``seed_order.next_seed``): the start seeds of the yardsticks and of the best reading
  under each cap and aim, the verdict's least seeds (and a few more while it is level with a lead
  that would be clear on them), the other contenders' start seeds (the readings within reach of
  the best), then the start seeds of the front's other members, then the seeds that tell
  level entrants apart, then those of a network smaller than a yardstick and ahead of it on
  the mean, not yet clearly (up to the most seeds). A time budget that cannot hold them all
  cuts the far end of that order.
- The *verdict* compares the answer with each yardstick under the cap: ahead, level or
  behind, by how much, on how many seeds each; and names the smallest network clearly ahead
  of a yardstick with fewer parameters than it and the answer (``Race.smallest_ahead``).

The seed-to-seed spread is pooled over the entrants (networks trained alike are about
equally noisy), shrunk towards the binomial spread of a validation reading
(``reading_spread``) while there are few seeds. Everything here is a pure function of the
seeds stored so far, so several processes race together and a resumed search continues the
race (``search.racing`` runs it).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from budgetnas.search.schedule.aims import MAX_AIM_REACH

Z = 2.0  # standard errors between two means that make a difference clear
REACH = 2.0  # reading spreads below the best reading under a cap that are still within reach
MAX_REACH = 4  # searched entrants within reach per cap, on top of the front's
PRIOR_DF = 4  # pseudo-degrees of freedom of the binomial spread in the pooled spread


@dataclass(frozen=True)
class RaceRules:
    """How many seeds: every entrant starts with ``start``; the answer and the strongest
    yardstick under each cap end with ``least`` (``--verify-seeds``; ``yardstick_least`` for
    the yardsticks when a time budget trimmed their seeds, and they start with no more); none
    gets more than ``most`` (``--race-seeds``)."""

    start: int = 2
    least: int = 3
    most: int = 8
    yardstick_least: int | None = None  # None: ``least``

    def __post_init__(self) -> None:
        if not 1 <= self.start <= self.most or not 1 <= self.least <= self.most:
            raise ValueError(f"race seeds must satisfy 1 <= start, least <= most: {self}")

    def start_of(self, e: Entrant) -> int:
        if e.yardstick and self.yardstick_least is not None:
            return min(self.start, self.yardstick_least)
        return self.start

    def least_of(self, e: Entrant) -> int:
        if e.yardstick and self.yardstick_least is not None:
            return min(self.yardstick_least, self.most)
        return self.least


@dataclass(frozen=True)
class Entrant:
    """A network in the race: ``key`` (``trial-12``, ``zoo-001``), its parameters, its
    search reading at the target (None: none), whether it is a yardstick, the validation
    accuracies of its new seeds so far (``vals``) and how many of its seeds failed."""

    key: str
    params: int
    reading: float | None = None
    yardstick: bool = False
    vals: tuple[float, ...] = ()
    failed: int = 0

    @property
    def done(self) -> int:
        """Seeds trained, or failed (a diverged seed is a result: it is not tried again)."""
        return len(self.vals) + self.failed

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.vals) if self.vals else None

    @property
    def label(self) -> str:
        kind, _, name = self.key.partition("-")
        return f"seed {name}" if kind == "zoo" else f"{kind} {name}"


def reading_spread(acc: float, val_images: int) -> float:
    """The binomial standard deviation of a validation accuracy ``acc`` read on
    ``val_images`` images: the floor of what a new seed moves a reading by (measured seed
    spreads: 0.09-0.19 point at 99% on 5,000 MNIST images, binomial 0.14; 0.43-0.57 at 87% on
    another 10-class set, binomial 0.48)."""
    p = min(max(acc, 0.5 / val_images), 1 - 0.5 / val_images)
    return math.sqrt(p * (1 - p) / max(1, val_images))


def reach_below(best: float, val_images: int) -> float:
    """The lowest reading still within reach of the ``best`` one: ``REACH`` reading spreads
    below it."""
    return best - REACH * reading_spread(best, val_images)


def pooled_spread(entrants: Iterable[Entrant], prior: float) -> float:
    """The seed-to-seed standard deviation pooled over ``entrants`` (each with two seeds or
    more), shrunk towards ``prior`` with ``PRIOR_DF`` pseudo-degrees of freedom."""
    ss = df = 0.0
    for e in entrants:
        if len(e.vals) > 1:
            m = statistics.fmean(e.vals)
            ss += sum((v - m) ** 2 for v in e.vals)
            df += len(e.vals) - 1
    return math.sqrt((ss + PRIOR_DF * prior**2) / (df + PRIOR_DF))


def pick_entrants(
    front: Sequence[tuple[str, int, float]],
    readings: Sequence[tuple[str, int, float]],
    *,
    caps: Sequence[int],
    val_images: int,
    aims: Sequence[int] = (),
) -> list[str]:
    """The searched entrants: every key of ``front`` (``(key, params, reading)``, already cut
    to what is verified), then, per cap, up to ``MAX_REACH`` more of ``readings`` (every
    searched network read at the target) under the cap whose reading is within ``REACH``
    reading spreads of the best reading there, the best first; then the same per aim
    (``search.schedule.aims``), up to ``MAX_AIM_REACH``."""
    keys = [k for k, _, _ in front]
    lines = [(cap, MAX_REACH) for cap in caps] + [(aim, MAX_AIM_REACH) for aim in aims]
    for line, most in lines:
        under = sorted((r for r in readings if r[1] <= line), key=lambda r: (-r[2], r[1], r[0]))
        if not under:
            continue
        best = under[0][2]
        reach = reach_below(best, val_images)
        added = 0
        for key, _, reading in under:
            if reading < reach or added >= most:
                break
            if key not in keys:
                keys.append(key)
                added += 1
    return keys


@dataclass(frozen=True)
class Verdict:
    """How the answer under a cap stands against one yardstick: ``ahead``, ``level`` or
    ``behind`` by ``margin`` (mean validation accuracy, answer minus yardstick), on ``seeds``
    (the answer's) and ``their_seeds``."""

    word: str
    margin: float
    seeds: int
    their_seeds: int
    yardstick: Entrant

    def text(self) -> str:
        """``behind seed 001 (hand-made, 9,798 params) by 0.42 point on validation (3 + 3
        seeds)``; ``level with ...`` gives the difference either way."""
        y = self.yardstick
        who = f"{y.label} (hand-made, {y.params:,} params)"
        points = abs(self.margin) * 100
        seeds = f"({self.seeds} + {self.their_seeds} seeds)"
        unit = "point" if points <= 1 else "points"
        if self.word == "level":
            sign = "+" if self.margin >= 0 else "-"
            return f"level with {who}: {sign}{points:.2f} {unit} on validation {seeds}"
        word = "ahead of" if self.word == "ahead" else "behind"
        return f"{word} {who} by {points:.2f} {unit} on validation {seeds}"

    def text_of(self, e: Entrant) -> str:
        """The verdict of a network other than the answer, ``e``: ``trial 40 (6,310 params: 64.4%
        of seed 001's) is ahead of seed 001 (...) by 0.21 point on validation (3 + 3 seeds)``."""
        share = f"{e.params / self.yardstick.params:.1%} of {self.yardstick.label}'s"
        return f"{e.label} ({e.params:,} params: {share}) is {self.text()}"


@dataclass(frozen=True)
class Standing:
    """The race under one cap, as the seeds so far say: its ``answer`` (None before any
    searched entrant has its start seeds), the searched entrants ``out`` (clearly behind it),
    the verdict against each yardstick under the cap, and who ``needs`` another seed."""

    cap: int
    answer: Entrant | None
    out: frozenset[str] = frozenset()
    verdicts: tuple[Verdict, ...] = ()
    needs: tuple[str, ...] = ()  # most urgent first
    spread: float = 0.0


@dataclass
class Race:
    """Every entrant's seeds so far, and the rules; ``standings`` are what the race says of
    them (``seed_order.next_seed``: who trains next)."""

    entrants: dict[str, Entrant]
    caps: tuple[int, ...]
    rules: RaceRules = field(default_factory=RaceRules)
    val_images: int = 5000
    aims: tuple[int, ...] = ()  # sizes under which the best readings contend too

    @property
    def lines(self) -> tuple[int, ...]:
        """The caps and the aims, ascending: the sizes under which the best readings are
        contenders (``seed_order.contenders``)."""
        return tuple(sorted({*self.caps, *self.aims}))

    def prior(self) -> float:
        """The reading spread at the best reading of the race's networks."""
        readings = [e.reading for e in self.entrants.values() if e.reading is not None]
        means = [e.mean for e in self.entrants.values() if e.mean is not None]
        best = max(readings + means, default=0.5)
        return reading_spread(best, self.val_images)

    def spread(self) -> float:
        return pooled_spread(self.entrants.values(), self.prior())

    def far(self, e: Entrant) -> bool:
        """Whether yardstick ``e``'s reading at the target is out of reach of the best searched
        reading under every cap it is under (``reach_below``): clearly behind on its one
        unselected reading, it starts with one seed (``start_of``)."""
        if not e.yardstick or e.reading is None:
            return False
        searched = [x for x in self.entrants.values() if not x.yardstick and x.reading is not None]
        caps = [c for c in self.caps if e.params <= c]
        if not caps:
            return False
        for cap in caps:
            best = max((x.reading for x in searched if x.params <= cap), default=None)
            if best is None or e.reading >= reach_below(best, self.val_images):
                return False
        return True

    def start_of(self, e: Entrant) -> int:
        """The seeds entrant ``e`` starts with: ``RaceRules.start_of``, one for a yardstick
        far behind (``far``; the strongest yardstick still ends with the least seeds)."""
        return min(1, self.rules.start_of(e)) if self.far(e) else self.rules.start_of(e)

    def _se(self, a: Entrant, b: Entrant, sigma: float) -> float:
        return sigma * math.sqrt(1 / len(a.vals) + 1 / len(b.vals))

    def started(self, cap: int) -> list[Entrant]:
        """The entrants under ``cap`` with their start seeds done and one of them trained:
        those the standings and the verdicts read."""
        return [
            e
            for e in self.entrants.values()
            if e.params <= cap and e.vals and e.done >= self.start_of(e)
        ]

    def standing(self, cap: int, sigma: float | None = None) -> Standing:
        sigma = self.spread() if sigma is None else sigma
        started = self.started(cap)
        searched = [e for e in started if not e.yardstick]
        if not searched:
            return Standing(cap, None, spread=sigma)
        leader = max(searched, key=lambda e: (e.mean, -e.params, e.key))
        out, needs = set(), []
        for e in searched:
            if e is leader:
                continue
            if leader.mean - e.mean > Z * self._se(leader, e, sigma):
                out.add(e.key)
            elif e.done < self.rules.most:
                needs.append(e)
        verdicts = []
        for y in sorted((e for e in started if e.yardstick), key=lambda e: -(e.mean or 0)):
            verdict = self.compare(leader, y, sigma)
            verdicts.append(verdict)
            if verdict.word == "level" and y.done < self.rules.most:
                needs.append(y)
        if needs and leader.done < self.rules.most:
            needs.append(leader)
        needs.sort(key=lambda e: (e.done, e is not leader, -(e.mean or 0), e.key))
        return Standing(
            cap,
            leader,
            frozenset(out),
            tuple(verdicts),
            tuple(e.key for e in needs),
            sigma,
        )

    def compare(self, a: Entrant, y: Entrant, sigma: float | None = None) -> Verdict:
        """How searched entrant ``a`` stands against yardstick ``y`` on their seeds."""
        sigma = self.spread() if sigma is None else sigma
        diff = a.mean - y.mean
        clear = abs(diff) > Z * self._se(a, y, sigma)
        word = ("ahead" if diff > 0 else "behind") if clear else "level"
        return Verdict(word, diff, len(a.vals), len(y.vals), y)

    def verdicts_for(self, key: str, cap: int) -> list[Verdict]:
        """Entrant ``key`` against every yardstick under ``cap`` with seeds (the strongest
        first); none when ``key`` has no seed."""
        a = self.entrants.get(key)
        if a is None or not a.vals:
            return []
        ys = [e for e in self.entrants.values() if e.yardstick and e.vals and e.params <= cap]
        sigma = self.spread()
        return [self.compare(a, y, sigma) for y in sorted(ys, key=lambda e: -e.mean)]

    def standings(self) -> list[Standing]:
        sigma = self.spread()
        return [self.standing(cap, sigma) for cap in self.caps]

    def smallest_ahead(self, cap: int) -> list[tuple[Entrant, Verdict]]:
        """Per yardstick under ``cap`` (the strongest first), the smallest searched entrant
        with fewer parameters than the yardstick and than the answer that is clearly ahead of
        it, both on at least the least seeds: a smaller network that dominates a hand-made
        one, as the race's seeds say."""
        sigma = self.spread()
        standing = self.standing(cap, sigma)
        if standing.answer is None:
            return []
        rules = self.rules
        started = self.started(cap)
        out = []
        for y in sorted((e for e in started if e.yardstick), key=lambda e: -e.mean):
            ahead = [
                (e, v)
                for e in started
                if not e.yardstick
                and e.params < min(y.params, standing.answer.params)
                and e.done >= rules.least_of(e)
                and y.done >= rules.least_of(y)
                for v in [self.compare(e, y, sigma)]
                if v.word == "ahead"
            ]
            if ahead:
                out.append(min(ahead, key=lambda p: (p[0].params, p[0].key)))
        return out
