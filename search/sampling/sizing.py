"""How sampled candidates' sizes spread over a cap: a size target per candidate, assigned.

With accuracy up and parameters down as two objectives, a sampler that also chose a
candidate's ``size`` (the fraction of the cap its widths fill, ``space.sample``) learns to
shrink it: small networks are cheap points of the front, so most of the compute went to
networks far below the cap the user asked about. With ``spread`` sizing (the default) the size
is not the sampler's to choose: each sampled candidate gets a target drawn stratified over
log(parameters), from the space's ``min_size_fraction`` of its cap up to the cap, and the
sampler chooses the structure that fills it.

The strata come in blocks of ``BLOCK`` slots: half of each block lies in the top band (cap/1.5
to the cap, in three equal strata of log-size), the other half in three equal strata of
log-size below it. The top band gets half the candidates, not the third a log-uniform draw
would give it: the answer a user asks for ("the best network under the cap") is there, and the
smaller half still draws the rest of the front. Each cap of a ladder has its own sequence.
A cap with aims (``search.schedule.aims``: a share of a seed network's parameters, where a
searched network would dominate it) has one more slot per aim in each block, sized from
``aim / AIM_BAND`` to the aim (under 10K: blocks of eight, three of them in the top band and
part of one aimed slot).

A candidate's slot is the first one of its cap that no other trial of the study holds (a
failed trial, or a candidate rejected before training over a MACs or activation cap, frees
its slot: the next candidate gets that target, so the spread holds over the candidates
trained), and its target is a pure function of the run's seed, the cap and the slot: a
resumed run continues the same sequence. A slot is taken once: written, then read back, and
when processes took it at once the earliest trial keeps it and the others take the next free
one. ``aimed`` sizing (the default) spreads the sizes so and aims (above); ``spread`` (runs made
before aims) does not aim; ``sampler`` sizing leaves ``size`` to the sampler, as before.
"""

from __future__ import annotations

import itertools
import math
import random
import time
from collections.abc import Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from budgetnas.search.schedule.aims import AIM_BAND

SIZINGS = ("aimed", "spread", "sampler")
ASSIGNED = ("aimed", "spread")  # the sizings that assign each candidate its size
SIZE_PARAM = "size"  # the suggestion of ``space.sample.sample_spec`` the target replaces
SLOT_ATTR = "size_slot"
FRACTION_ATTR = "size_fraction"  # the assigned size, as a fraction of the trial's cap
TOP_BAND = 1.5  # the top band: cap/TOP_BAND to the cap
BLOCK = 6  # slots per block: 3 strata in the top band, 3 below it
SETTLE_S = 0.5  # seconds between the two readings of a slot's holders (as promotions' claims)
ATTEMPTS = 20  # slots tried before a trial keeps the one it has (a race lost that often)


def strata(min_fraction: float, aims: Sequence[float] = ()) -> list[tuple[float, float]]:
    """The (low, high) log size fractions of one block's slots, top band first: three equal
    strata from 1/TOP_BAND to 1 and three from ``min_fraction`` to 1/TOP_BAND (six over
    ``min_fraction`` to 1 when the space's smallest target is already in the top band); then
    one per aim (a fraction of the cap), from ``aim / AIM_BAND`` to the aim."""

    def split(low: float, high: float, n: int) -> list[tuple[float, float]]:
        step = (high - low) / n
        return [(low + i * step, low + (i + 1) * step) for i in range(n)]

    low, top = math.log(min_fraction), -math.log(TOP_BAND)
    aimed = [(max(low, math.log(a / AIM_BAND)), math.log(a)) for a in aims]
    if low >= top:
        return split(low, 0.0, BLOCK)[::-1] + aimed
    half = BLOCK // 2
    return split(top, 0.0, half)[::-1] + split(low, top, BLOCK - half)[::-1] + aimed


def size_fraction(
    slot: int, *, seed: int, cap: int, min_fraction: float, aims: Sequence[float] = ()
) -> float:
    """The size (a fraction of ``cap``) of the candidate in ``slot`` of ``cap``'s sequence:
    each block of slots covers every stratum once (``strata``, with ``aims``), in an order
    shuffled by the seed, at a log-uniform point of its stratum."""
    bounds = strata(min_fraction, aims)
    block, position = divmod(slot, len(bounds))
    rng = random.Random(f"budgetnas-size:{seed}:{cap}:{block}")
    order = list(range(len(bounds)))
    rng.shuffle(order)
    points = [rng.random() for _ in bounds]
    low, high = bounds[order[position]]
    fraction = math.exp(low + points[position] * (high - low))
    return min(1.0, max(min_fraction, fraction))


def _holds(trial: FrozenTrial, cap: int) -> bool:
    """Whether ``trial`` holds a slot of ``cap``'s sequence: given one, neither failed nor
    rejected before training."""
    attrs = trial.user_attrs
    return (
        attrs.get(SLOT_ATTR) is not None
        and attrs.get("cap") == cap
        and trial.state != TrialState.FAIL
        and not attrs.get("rejected")
    )


def _may_claim(trial: FrozenTrial, before: int, cap: int) -> bool:
    """Whether ``trial``, running and earlier than trial ``before``, may still take a slot of
    ``cap`` (it has none yet and is not a reference, a promotion or a rejected candidate)."""
    attrs = trial.user_attrs
    return (
        trial.state == TrialState.RUNNING
        and trial.number < before
        and attrs.get(SLOT_ATTR) is None
        and attrs.get("reference") is None
        and attrs.get("promoted_from") is None
        and not attrs.get("rejected")
        and attrs.get("cap") in (None, cap)
    )


def _keeps(trial: optuna.Trial, slot: int, cap: int) -> bool:
    """Whether ``trial``, which has written ``slot``, keeps it: no earlier trial holds it.
    While an earlier trial may still write the same slot, the holders are read twice, a
    moment apart (storages have no lock: in a rare race two trials may still share a slot)."""

    def earliest() -> tuple[bool, bool]:
        trials = trial.study.get_trials(deepcopy=False)
        holders = [t.number for t in trials if _holds(t, cap) and t.user_attrs[SLOT_ATTR] == slot]
        pending = any(_may_claim(t, trial.number, cap) for t in trials)
        return min(holders, default=trial.number) == trial.number, pending

    first, pending = earliest()
    if first and pending:
        time.sleep(SETTLE_S)
        first, _ = earliest()
    return first


def assign_size(
    trial: optuna.Trial,
    *,
    cap: int,
    seed: int,
    min_fraction: float,
    aims: Sequence[float] = (),
) -> float:
    """The size fraction of this sampled candidate, stored on it (``size_slot``,
    ``size_fraction``): the one it holds already (a queued copy of a trial whose process died
    keeps its own), else that of the first slot of ``cap`` no other trial holds, written and
    read back (``_keeps``); ``aims``: the cap's aims, as fractions of it."""
    stored = trial.user_attrs.get(FRACTION_ATTR)
    if stored is not None:
        return float(stored)
    lost: set[int] = set()  # slots an earlier trial took at the same time as this one
    for _ in range(ATTEMPTS):
        taken = {
            t.user_attrs[SLOT_ATTR]
            for t in trial.study.get_trials(deepcopy=False)
            if t.number != trial.number and _holds(t, cap)
        }
        slot = next(k for k in itertools.count() if k not in taken and k not in lost)
        trial.set_user_attr(SLOT_ATTR, slot)
        if _keeps(trial, slot, cap):
            break
        lost.add(slot)
    fraction = size_fraction(slot, seed=seed, cap=cap, min_fraction=min_fraction, aims=aims)
    trial.set_user_attr(FRACTION_ATTR, fraction)
    return fraction
