"""Which entrant of the race trains its next seed (``search.verification.race`` holds the
entrants, the standings and the verdicts; this module, the order of the seeds).

The order spends a time budget on the verdict before the breadth of the race:

1. the start seeds of the *leads* (``leads``: the yardsticks and, under each cap and aim, the
   best reading), so that every line has an answer and a verdict early;
2. the answer's and the strongest yardstick's least seeds (the verdict's), and while the two
   are level with the answer ahead on the mean by enough to be clear on ``EARLY`` seeds more
   each if the margin holds, those seeds (a smaller lead, or one behind, waits for the other
   contenders instead: one of them may be clearly ahead);
3. the other contenders' start seeds (``contenders``: the readings within reach of the best
   under a cap or an aim), the best reading first; a contender that overtakes the answer
   gets the verdict's seeds of step 2 before the next start seed;
4. the start seeds of the front's other members;
5. the seeds that tell level entrants apart, and last the seeds of a network smaller than a
   yardstick and ahead of it on the mean: to the least seeds, and while the two are level,
   to the most (``smaller_ahead``).

A time budget that cannot hold them all cuts the far end of that order (the 45-minute 10K
search on a CPU raced 10 contenders at 2 seeds each and left seed 001 one seed short of its
verdict). A pure function of the seeds so far, so every process of a search asks it under one
lock."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

from budgetnas.search.verification.race import Entrant, Race, Standing, Z, reach_below

EARLY = 2  # seeds past the least that a level verdict that may turn clear gets in step 2


def _by_line(race: Race) -> tuple[set[str], list[list[Entrant]]]:
    """The yardsticks and any entrant without a reading; and under each cap and aim
    (``Race.lines``) with one, the searched entrants with a reading."""
    entrants = race.entrants.values()
    keys = {e.key for e in entrants if e.yardstick or e.reading is None}
    searched = [e for e in entrants if not e.yardstick and e.reading is not None]
    unders = [under for line in race.lines if (under := [e for e in searched if e.params <= line])]
    return keys, unders


def contenders(race: Race) -> set[str]:
    """The entrants that can be an answer or a verdict: the yardsticks, any entrant without
    a reading, and the searched entrants within reach of the best reading (``race.reach_below``)
    under a cap or an aim (``Race.lines``). The front's other members (small networks far below
    the best reading) are raced to verify the front, and wait for the verdict's seeds."""
    keys, unders = _by_line(race)
    for under in unders:
        reach = reach_below(max(e.reading for e in under), race.val_images)
        keys.update(e.key for e in under if e.reading >= reach)
    return keys


def leads(race: Race) -> set[str]:
    """The entrants whose start seeds come first: the yardsticks, any entrant without a
    reading, and under each cap and aim (``Race.lines``) the searched entrant with the best
    reading (the fewer parameters on a tie)."""
    keys, unders = _by_line(race)
    keys.update(min(under, key=lambda e: (-e.reading, e.params, e.key)).key for under in unders)
    return keys


def next_seed(
    race: Race, busy: Iterable[str] = (), fits: Callable[[str], bool] | None = None
) -> str | None:
    """The entrant to train one more seed of next (None: nothing, once ``busy`` ends), in
    the module's order; among start seeds, the best reading first, to its start seeds.
    ``fits``: whether a seed of an entrant can still be trained (a time budget); those that
    cannot are passed over, and a start seed that cannot fit holds nothing up. While a
    contender's start seed trains in another process, a free process starts the next
    contender's or a far member's rather than wait."""
    busy = set(busy)
    rules = race.rules

    def free(key: str) -> bool:
        return key not in busy and (fits is None or fits(key))

    def started(e: Entrant) -> bool:  # or never will: its start seed does not fit
        return e.done >= race.start_of(e) or (e.key not in busy and not free(e.key))

    def first_start(entrants: list[Entrant]) -> str | None:
        todo = [e for e in entrants if e.done < race.start_of(e) and free(e.key)]
        if not todo:
            return None
        # the best reading first, to its start seeds (a race cut short leaves whole
        # contenders rather than many with one seed: one seed is no standing)
        return min(todo, key=lambda e: (-(e.reading or 0), e.done, e.key)).key

    def verdict_seeds(standings: list[Standing]) -> str | None:
        """The answer's and the strongest yardstick's least seeds, under each cap (the hard
        cap first); then, while the two are level with the answer ahead on the mean by more
        than ``Z`` standard errors at ``EARLY`` more seeds each, those seeds, the fewer
        seeds first."""
        pairs = [(s.answer, s.verdicts[0] if s.verdicts else None) for s in standings if s.answer]
        for answer, verdict in pairs:
            for e in [answer] + ([verdict.yardstick] if verdict else []):
                if free(e.key) and e.done < rules.least_of(e):
                    return e.key
        sigma = race.spread()
        for answer, verdict in pairs:
            if verdict is None or verdict.word != "level":
                continue
            y = verdict.yardstick
            early = {e.key: min(rules.least_of(e) + EARLY, rules.most) for e in (answer, y)}
            # clear on the early seeds if the margin holds: else they are better spent on the
            # other contenders (one of them may be clearly ahead)
            se = sigma * math.sqrt(1 / early[answer.key] + 1 / early[y.key])
            if verdict.margin <= Z * se:
                continue
            for e in sorted([answer, y], key=lambda e: (e.done, e.yardstick)):
                if free(e.key) and e.done < early[e.key]:
                    return e.key
        return None

    inside, lead = contenders(race), leads(race)
    entrants = list(race.entrants.values())
    first = [e for e in entrants if e.key in lead]
    inner = [e for e in entrants if e.key in inside and e.key not in lead]
    outer = [e for e in entrants if e.key not in inside and e.key not in lead]
    if key := first_start(first):
        return key
    standings = race.standings()[::-1]  # the hard cap first
    # the verdict once the answer is known (every searched lead started) and the yardsticks
    # that can be the strongest: a far one's seed in flight holds nothing up
    ready = all(started(e) for e in first if not race.far(e))
    if ready and (key := verdict_seeds(standings)):
        return key
    if key := first_start(inner):
        return key
    if key := first_start(outer):
        return key
    if not all(started(e) for e in race.entrants.values()):
        return None  # the race's decisions wait for every start seed
    urgent = [
        (race.entrants[k].done, -s.cap, i, k)
        for s in standings
        for i, k in enumerate(s.needs)
        if free(k)
    ]
    if urgent:
        return min(urgent)[-1]
    sigma = race.spread()
    pairs = [p for s in standings for p in smaller_ahead(race, s.cap, standings=standings)]
    for beyond_least in (False, True):  # every pair to the least seeds before any to the most
        for e, y in pairs:
            short = _short(race, e, y, sigma, beyond_least=beyond_least)
            for x in sorted(short, key=lambda x: x.done):
                if free(x.key):
                    return x.key
    return None


def _short(
    race: Race, e: Entrant, y: Entrant, sigma: float | None = None, *, beyond_least: bool = True
) -> list[Entrant]:
    """Of searched entrant ``e``, ahead of yardstick ``y`` on the mean, and ``y``: those short
    of the seeds the pair needs: the least each and, while the two are level (and
    ``beyond_least``), the most."""
    rules = race.rules
    level = beyond_least and race.compare(e, y, sigma).word == "level"
    return [x for x in (e, y) if x.done < (rules.most if level else rules.least_of(x))]


def smaller_ahead(
    race: Race, cap: int, *, standings: Sequence[Standing] | None = None
) -> list[tuple[Entrant, Entrant]]:
    """Pairs (searched entrant, yardstick) under ``cap`` where the searched one has fewer
    parameters than the answer and than the yardstick and a mean ahead of the yardstick's,
    and it or the yardstick has fewer than the least seeds, or fewer than the most while the
    two are level: the race's last use of its time, for a smaller network that may dominate a
    hand-made one (named only when clearly ahead on the least seeds each,
    ``Race.smallest_ahead``). Networks larger than one already named against the same
    yardstick are left alone. The smallest first."""
    standings = race.standings() if standings is None else standings
    standing = next((s for s in standings if s.cap == cap), None)
    if standing is None or standing.answer is None:
        return []
    started = race.started(cap)
    sigma = race.spread()
    named = {y.key: e.params for e, y in ((e, v.yardstick) for e, v in race.smallest_ahead(cap))}
    pairs = []
    for y in (e for e in started if e.yardstick):
        for e in started:
            if e.yardstick or e.params >= min(y.params, standing.answer.params):
                continue
            if e.mean <= y.mean or e.params > named.get(y.key, e.params):
                continue  # not ahead of y, or a smaller one is already named against it
            if _short(race, e, y, sigma):
                pairs.append((e, y))
    return sorted(pairs, key=lambda p: (p[0].params, p[0].key, p[1].key))


def finished(race: Race) -> bool:
    """Nothing left to train: every standing is decided or at the most seeds."""
    return next_seed(race) is None
