"""Yardsticks within a time budget: the reference networks never take the search's place.

A search trains the seed networks under its cap beside its candidates (at every rung, then
verified with new seeds at the target), so that every comparison is like for like. Seed
networks train slower than candidates of their size (more layers, dropout), and five of them
verified with three seeds at the target can take all of a ``--budget-time``: a search that
samples nothing. So before a new search with a time budget trains anything, each reference
network and a few candidates drawn from the space are timed for a few optimizer steps
(``trainers.bench.seconds_per_image``), and the yardsticks get at most ``SHARE`` of the
budget, trimmed in this order until they fit:

1. every rung, and as many verify seeds as the front (nothing trimmed);
2. the target rung only (no cheaper rungs), as many seeds as the front;
3. the target rung only, one seed fewer at a time, down to one.

Where even the least of them does not fit beside the least search that reaches the target
(``eta ** (rungs - 1)`` candidates at rung 0, so that one is promoted to the target, and its
verification), the search stops before it trains anything, in one line that says what would
fit. Every reference network the user asked for stays a yardstick: the trimming says how
much each is trained, never which are dropped.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import optuna
import torch

from budgetnas.search.budget import format_params
from budgetnas.search.config import SearchConfig
from budgetnas.search.errors import SearchError
from budgetnas.space.sample import Rejected, sample_spec
from budgetnas.space.spec import ArchSpec
from budgetnas.trainers.bench import seconds_per_image
from budgetnas.trainers.data import TrainVal

SHARE = 1 / 3  # of a time budget, at most, for the yardsticks when it cannot hold all of them
PROBE_CANDIDATES = 3  # candidates drawn from the space (a fixed seed) to time a candidate


@dataclass(frozen=True)
class Costs:
    """Seconds of training per image (one process, as a trial process runs) of each
    reference network and of a candidate (the mean of ``PROBE_CANDIDATES`` drawn ones)."""

    references: dict[str, float]
    candidate: float


@dataclass(frozen=True)
class Level:
    """How much the yardsticks are trained: at ``rungs`` (``all`` or ``target``) and verified
    with ``seeds`` new seeds each."""

    rungs: str
    seeds: int

    def label(self) -> str:
        where = "at every rung" if self.rungs == "all" else "at the target only"
        return f"{where}, verified with {self.seeds} seed{'s' * (self.seeds > 1)}"


def levels(cfg: SearchConfig) -> list[Level]:
    """The yardstick levels, from nothing trimmed to the least (see the module)."""
    full = cfg.verify_seeds
    out = [Level("all", full)] + [Level("target", s) for s in range(full, 0, -1)]
    return out if full > 0 else [Level("all", 0), Level("target", 0)]


def yardstick_seconds(cfg: SearchConfig, costs: Costs, level: Level, keys=None) -> float:
    """Process-seconds the reference networks ``keys`` (default: all) take at ``level``."""
    rungs = cfg.schedule.rungs if level.rungs == "all" else (cfg.schedule.target,)
    image_epochs = sum(r.image_epochs for r in rungs)
    image_epochs += level.seeds * cfg.schedule.target.image_epochs
    chosen = costs.references if keys is None else {k: costs.references[k] for k in keys}
    return sum(rate * image_epochs for rate in chosen.values())


def least_search_seconds(cfg: SearchConfig, costs: Costs, *, verify_seeds: int) -> float:
    """Process-seconds of the least search that reaches the target: ``eta ** (R - 1)``
    candidates at rung 0, the promotions they earn (a third of each rung moves up, at least
    one), and the verification of the one at the target with ``verify_seeds`` seeds."""
    schedule = cfg.schedule
    n0 = schedule.eta ** (len(schedule.rungs) - 1)
    image_epochs = sum(
        max(1, math.ceil(n0 / schedule.eta**r.index)) * r.image_epochs for r in schedule.rungs
    )
    image_epochs += verify_seeds * schedule.target.image_epochs
    return costs.candidate * image_epochs


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def _budget(seconds: float) -> str:
    """A --budget-time that holds ``seconds``, rounded up to whole minutes."""
    minutes = math.ceil(seconds / 60)
    if minutes < 60:
        return f"{minutes}m"
    return f"{minutes // 60}h" + (f"{minutes % 60:02d}m" if minutes % 60 else "")


def plan_yardsticks(cfg: SearchConfig, costs: Costs) -> tuple[SearchConfig, str | None]:
    """``cfg`` with its yardsticks trimmed to its time budget (``reference_rungs``,
    ``reference_seeds``) and a note saying so, or ``cfg`` unchanged and None when they fit
    untrimmed. Raises ``SearchError`` (one line, what would fit) when the least yardsticks
    and the least search do not fit the budget together."""
    if not cfg.budget_time or not costs.references:
        return cfg, None
    capacity = cfg.budget_time * cfg.workers  # process-seconds
    least = least_search_seconds(cfg, costs, verify_seeds=cfg.verify_seeds)
    options = levels(cfg)
    chosen = next(
        (lv for lv in options if yardstick_seconds(cfg, costs, lv) <= SHARE * capacity), None
    )
    if chosen is None and yardstick_seconds(cfg, costs, options[-1]) + least <= capacity:
        chosen = options[-1]
    if chosen is None:
        raise SearchError(_cannot_fit(cfg, costs, options[-1], least))
    if chosen == options[0]:
        return cfg, None
    full = yardstick_seconds(cfg, costs, options[0])
    trimmed = replace(cfg, reference_rungs=chosen.rungs, reference_seeds=chosen.seeds)
    n = len(costs.references)
    note = (
        f"note: the {n} seed network{'s' * (n > 1)} trained {options[0].label()} would take "
        f"{full / capacity:.0%} of --budget-time {_budget(cfg.budget_time)} "
        f"(about {_minutes(full / cfg.workers)}): each is trained {chosen.label()} "
        f"(about {_minutes(yardstick_seconds(cfg, costs, chosen) / cfg.workers)}), so that the "
        "search has the rest; all of it with --budget-time "
        f"{_budget(full / SHARE / cfg.workers)}"
    )
    return trimmed, note


def _cannot_fit(cfg: SearchConfig, costs: Costs, least_level: Level, least: float) -> str:
    """The one line of a budget that holds no candidate beside its yardsticks."""
    capacity = cfg.budget_time * cfg.workers
    yard = yardstick_seconds(cfg, costs, least_level)
    n = len(costs.references)
    fits = []
    # the cheapest references first: as many as fit beside the least search
    by_cost = sorted(costs.references, key=costs.references.get)
    keep: list[str] = []
    for key in by_cost:
        if yardstick_seconds(cfg, costs, least_level, keep + [key]) + least > capacity:
            break
        keep.append(key)
    if keep:
        fits.append(f"--references {','.join(keep)}")
    fits.append("--references none")
    one = least_search_seconds(cfg, costs, verify_seeds=1)
    if cfg.verify_seeds > 1 and yard + one <= capacity:
        fits.append("--verify-seeds 1")
    fits.append(f"--budget-time {_budget((yard + least) / cfg.workers * 1.1)}")
    return (
        f"--budget-time {_budget(cfg.budget_time)} cannot fit one candidate beside its "
        f"yardsticks: the {n} seed network{'s' * (n > 1)} take about "
        f"{_minutes(yard / cfg.workers)} at the least ({least_level.label()}), a search of "
        f"{cfg.schedule.eta ** (len(cfg.schedule.rungs) - 1)} candidates up to the target about "
        f"{_minutes(least / cfg.workers)} (timed on this {_device_word(cfg)} with "
        f"{cfg.workers} trial process{'es' * (cfg.workers > 1)}); would fit: " + ", or ".join(fits)
    )


def _device_word(cfg: SearchConfig) -> str:
    return "GPU" if str(cfg.device).startswith("cuda") else "machine"


def probe_candidates(cfg: SearchConfig, n: int = PROBE_CANDIDATES) -> list[ArchSpec]:
    """``n`` candidates drawn at random (a fixed seed) from the search's space under its cap."""
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created" line
    try:
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    finally:
        optuna.logging.set_verbosity(level)
    out: list[ArchSpec] = []
    for _ in range(50 * n):
        if len(out) == n:
            break
        trial = study.ask()
        with contextlib.suppress(Rejected):  # over a cap: draw again
            out.append(sample_spec(trial, budget=cfg.budget, cfg=cfg.space_config))
        study.tell(trial, 0.0)
    return out


def time_costs(
    cfg: SearchConfig,
    data: TrainVal,
    device: torch.device,
    *,
    threads: int,
    timer: Callable[..., float] = seconds_per_image,
) -> Costs:
    """Time every reference network of ``cfg`` and ``PROBE_CANDIDATES`` candidates for a few
    steps on ``device``, with ``threads`` threads (as one trial process has)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        refs = {
            key: timer(spec, data, cfg.recipe, device=device)
            for key, (spec, _) in cfg.reference_specs().items()
        }
        probes = [timer(spec, data, cfg.recipe, device=device) for spec in probe_candidates(cfg)]
    finally:
        torch.set_num_threads(before)
    candidate = sum(probes) / len(probes) if probes else min(refs.values(), default=0.0)
    return Costs(refs, candidate)


def reference_weight(costs: Costs) -> float:
    """A reference network's image-epoch in a candidate's (the mean over the references), for
    the time budget's plan of the references' verification."""
    if not costs.references or costs.candidate <= 0:
        return 1.0
    return sum(costs.references.values()) / len(costs.references) / costs.candidate


def describe(costs: Costs, cap: int) -> str:
    """One line of the timings (for the benchmark's logs)."""
    refs = ", ".join(f"{k} {v * 1e6:.0f} us/img" for k, v in costs.references.items())
    return f"timed under {format_params(cap)}: candidate {costs.candidate * 1e6:.0f} us/img; {refs}"
