"""Aimed sizes: where a searched network would dominate a hand-made one.

A search answers "the best network under the cap", and it has to beat the hand-made networks
under that cap (the yardsticks, ``search.schedule.yardsticks``). Beating one outright is being
ahead of it with clearly fewer parameters: at most ``DOMINATE`` of them. Left to the cap
alone, a search spends little there: the sizing puts half the candidates in the top band (cap
/ 1.5 to the cap), the promotion rule ranks a network against the larger ones of its size band,
and the race looks at the readings within reach of the best under the cap, which a network a
third smaller is rarely in. So each cap gets *aims*: ``DOMINATE`` of the parameters of each of
its ``AIMS_PER_CAP`` largest yardsticks (whatever their accuracy: the largest is the strongest
as a rule, the second need not be), above the space's smallest target, and the search aims
at each (with ``--sizing aimed``, the default):

- sizing (``search.sampling.sizing``): each block of slots holds one slot per aim, its size
  drawn log-uniformly from ``aim / AIM_BAND`` to the aim;
- promotion (``search.schedule.promotion``): an aim is a line no size band crosses: a network
  at or under it is ranked among the networks on its side, so the best reading under each aim
  is first in its band and moves up with the best of the other bands (by accuracy among them,
  within the rung's quota);
- the race (``search.verification.race``): the readings within reach of the best under an aim
  are entrants and contenders (``MAX_AIM_REACH`` of them per aim), and a network smaller than a
  yardstick and ahead of it on the mean gets seeds, up to the most, until the verdict is clear.
"""

from __future__ import annotations

from collections.abc import Iterable

DOMINATE = 0.7  # an aim: this share of a yardstick's parameters
AIMS_PER_CAP = 2  # aims per cap, at its largest yardsticks
AIM_BAND = 1.25  # an aimed slot's sizes: aim / AIM_BAND to the aim
MAX_AIM_REACH = 2  # searched entrants within reach of the best reading under an aim


def aim_of(params: int) -> int:
    """The aim at a yardstick of ``params`` parameters: ``DOMINATE`` of them."""
    return int(DOMINATE * params)


def aims_under(cap: int, yardsticks: Iterable[int], *, smallest: float = 0) -> tuple[int, ...]:
    """The aims of ``cap``, largest first: ``DOMINATE`` of the parameters of each of the
    ``AIMS_PER_CAP`` largest ``yardsticks`` (parameter counts) under the cap, those at
    ``smallest`` parameters or more (the space's smallest target)."""
    largest = sorted((p for p in yardsticks if p <= cap), reverse=True)[:AIMS_PER_CAP]
    aims = {aim_of(p) for p in largest}
    return tuple(sorted((a for a in aims if a >= smallest), reverse=True))
