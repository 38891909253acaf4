"""Fidelity rungs: from cheap to the target recipe, each ``eta`` times the one before.

A search is given a target fidelity: the recipe's epochs on the training split (or its
subset). With ``--rungs R`` it explores at ``R - 1`` cheaper rungs first: rung ``r`` costs
``1 / eta ** (R - 1 - r)`` of the target in image-epochs (epochs are cut first, down to one,
then images: the first images of a fixed permutation of the training split, so a rung's
images are a subset of the next rung's). Rungs below the target take at least
``MIN_RUNG_STEPS`` optimizer steps where they are planned for the user.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from budgetnas.search.errors import SearchError
from budgetnas.search.sampling.pruners import SINGLE_OBJECTIVE_PRUNERS

MIN_IMAGES = 500  # the smallest training subset a rung uses


# Optimizer steps a rung below the target takes at least, where the rungs are planned for the
# user (--rungs not given): with fewer, candidates are still at chance level and a rung's
# ranking is a lottery. Measured with the default recipe (benchmarks/chance.py, MNIST at 28x28
# and at 8x8 on 1,293 images, 6-8 networks each): after 20 steps 1-2 networks were within 1.5x
# of chance, after 40 none (median 42% and 50%).
MIN_RUNG_STEPS = 40


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


# fidelity rungs when --rungs is not given: promotion beat single-fidelity search at equal
# compute (docs/benchmarks.md#promotion-across-fidelities)
DEFAULT_RUNGS = 3


def auto_rungs(
    *, epochs: int, images: int, eta: int, pruner: str, batch: int | None = None
) -> tuple[int, str | None]:
    """The rungs a search gets when ``--rungs`` is not given, and why when fewer than
    ``DEFAULT_RUNGS``: one with a pruner that compares trials across fidelities, else as many
    up to ``DEFAULT_RUNGS`` as the target leaves room for below it, each rung at most half
    the cost of the next (a rung nearly as dear as the next ranks nothing cheaply) and, with
    ``batch``, of at least ``MIN_RUNG_STEPS`` optimizer steps (fewer leave candidates at
    chance)."""
    if pruner in SINGLE_OBJECTIVE_PRUNERS:
        return 1, f"--pruner {pruner} compares trials across fidelities"
    floor = {"min_steps": MIN_RUNG_STEPS, "batch": batch} if batch else {}
    for rungs in range(DEFAULT_RUNGS, 1, -1):
        try:
            plan = plan_rungs(epochs=epochs, images=images, rungs=rungs, eta=eta, **floor)
        except SearchError:
            continue
        steps = zip(plan, plan[1:], strict=False)
        if all(2 * low.image_epochs <= high.image_epochs for low, high in steps):
            break
    else:
        rungs = 1
    if rungs == DEFAULT_RUNGS:
        return rungs, None
    room = "no room for a cheaper rung" if rungs == 1 else f"room for {rungs - 1} cheaper rung"
    steps = f" and of {MIN_RUNG_STEPS} optimizer steps or more" if batch else ""
    return rungs, (
        f"the target ({epochs} ep x {images:,} img) leaves {room} at half its cost{steps}"
    )
