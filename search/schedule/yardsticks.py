"""Yardsticks within a time budget: the reference networks never take the search's place.

A search trains the seed networks under its cap beside its candidates (at every rung, then
verified with new seeds at the target), so that every comparison is like for like. Seed
networks train slower than candidates of their size (more layers, dropout), and five of them
verified with three seeds at the target can take all of a ``--budget-time``: a search that
samples nothing. So before a new search with a time budget trains anything, each reference
network and a few candidates drawn from the space are timed for a few optimizer steps
(``trainers.bench.seconds_per_image``), and the yardsticks get at most ``YARDSTICK_SHARE`` of the
budget, trimmed in this order until they fit:

1. every rung, and as many verify seeds as the front (nothing trimmed);
2. the target rung only (no cheaper rungs), as many seeds as the front;
3. the target rung only, one seed fewer at a time, down to one.

Where even the least of them is over the share, they take it all the same if they still fit
beside the least search that reaches the target (``eta ** (rungs - 1)`` candidates at rung 0,
so that one is promoted to the target, and its verification); where they do not, the search
stops before it trains anything, in one line that says what would fit. Trainings the results
cache holds already cost nothing: a richer level the cache holds whole is taken, and the time
budget keeps no time for a verification the cache holds (``pending_verification``). Every
reference network the user asked for stays a yardstick: the trimming says how much each is
trained, never which are dropped.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import optuna
import torch

from budgetnas.search.cache.keys import trial_threads
from budgetnas.search.cache.store import ResultCache
from budgetnas.search.errors import SearchError
from budgetnas.search.schedule.trials import verify_seeds
from budgetnas.search.study.config import SearchConfig
from budgetnas.space.sample import Rejected, sample_spec
from budgetnas.space.spec import ArchSpec
from budgetnas.trainers.bench import seconds_per_image
from budgetnas.trainers.data import TrainVal
from budgetnas.trainers.evaluate import resolve_device
from budgetnas.trainers.train import TrainingError

# of a time budget, at most, for the yardsticks when it cannot hold all of them
YARDSTICK_SHARE = 1 / 3
PROBE_CANDIDATES = 3  # candidates drawn from the space (a fixed seed) to time a candidate
# a probe's few steps that fail so (a loss that is not finite, out of device memory) leave
# the plan untrimmed; the search then meets the failure as a trial's own
EXPECTED_FAILURES = (TrainingError, torch.cuda.OutOfMemoryError)


@dataclass(frozen=True)
class Costs:
    """Seconds of training per image (one process, as a trial process runs) of each
    reference network and of a candidate (the mean of ``PROBE_CANDIDATES`` drawn ones);
    ``held``: per reference, its trainings the results cache holds already (``("rung", r)``,
    ``("seed", s)``), which cost nothing."""

    references: dict[str, float]
    candidate: float
    held: dict[str, frozenset[tuple[str, int]]] = field(default_factory=dict)


@dataclass(frozen=True)
class Level:
    """How much the yardsticks are trained: at ``rungs`` (``all`` or ``target``) and verified
    with ``seeds`` new seeds each."""

    rungs: str
    seeds: int

    def label(self) -> str:
        where = "at every rung" if self.rungs == "all" else "at the target only"
        if not self.seeds:
            return f"{where}, not verified"
        return f"{where}, verified with {self.seeds} seed{'s' * (self.seeds > 1)}"


def levels(cfg: SearchConfig) -> list[Level]:
    """The yardstick levels, from nothing trimmed to the least (see the module)."""
    full = cfg.verify_seeds
    out = [Level("all", full)] + [Level("target", s) for s in range(full, 0, -1)]
    return out if full > 0 else [Level("all", 0), Level("target", 0)]


def planned(cfg: SearchConfig, level: Level) -> list[tuple[tuple[str, int], int]]:
    """The trainings of one reference network at ``level``: (``("rung", r)`` or
    ``("seed", s)``, image-epochs)."""
    rungs = cfg.schedule.rungs if level.rungs == "all" else (cfg.schedule.target,)
    target = cfg.schedule.target.image_epochs
    seeds = verify_seeds(level.seeds, used=cfg.recipe.seed)
    return [(("rung", r.index), r.image_epochs) for r in rungs] + [
        (("seed", s), target) for s in seeds
    ]


def yardstick_seconds(cfg: SearchConfig, costs: Costs, level: Level, keys=None) -> float:
    """Process-seconds the reference networks ``keys`` (default: all) take at ``level``
    (what the results cache holds costs nothing)."""
    chosen = costs.references if keys is None else {k: costs.references[k] for k in keys}
    return sum(
        rate * image_epochs
        for key, rate in chosen.items()
        for what, image_epochs in planned(cfg, level)
        if what not in costs.held.get(key, frozenset())
    )


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


def check_budget_fits(cfg: SearchConfig, costs: Costs, *, overhead: float) -> None:
    """Refuse, in one line, a ``--budget-time`` that cannot hold the least search that
    reaches the target (``least_search_seconds``, with one verify seed) beside what a search
    spends besides training (``overhead``: starting, loading the data, timing the networks,
    the end's processes and reports); before anything is trained or written."""
    k = side_by_side(cfg)
    least = least_search_seconds(cfg, costs, verify_seeds=min(1, cfg.verify_seeds)) / k
    if least + overhead <= cfg.budget_time:
        return
    n = cfg.schedule.eta ** (len(cfg.schedule.rungs) - 1)
    raise SearchError(
        f"--budget-time {_as_given(cfg.budget_time)} cannot hold the least search: {n} "
        f"candidate{'s' * (n != 1)} up to the target take{'s' * (n == 1)} about {least:.0f} s "
        "here, and starting, loading the data and the end take about "
        f"{overhead:.0f} s; give --budget-time {_budget((least + overhead) * 1.5)} or more, or "
        "a smaller --epochs or --train-subset"
    )


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
    capacity = cfg.budget_time * side_by_side(cfg)  # process-seconds
    least = least_search_seconds(cfg, costs, verify_seeds=cfg.verify_seeds)
    options = levels(cfg)
    # the level is chosen as if nothing were cached, so that the same command plans the same
    # trainings again (and a second run reuses them all); what the cache holds counts where
    # the least level would not fit otherwise, and where it holds a richer level whole
    bare = replace(costs, held={})
    chosen = next(
        (lv for lv in options if yardstick_seconds(cfg, bare, lv) <= YARDSTICK_SHARE * capacity),
        None,
    )
    if chosen is None and yardstick_seconds(cfg, costs, options[-1]) + least <= capacity:
        chosen = options[-1]
    if chosen is None:
        raise SearchError(_cannot_fit(cfg, costs, options[-1], least))
    # a richer level the cache holds whole costs nothing: a yardstick verified with more seeds
    free = next((lv for lv in options if yardstick_seconds(cfg, costs, lv) == 0), None)
    if free is not None and options.index(free) < options.index(chosen):
        chosen = free
    if chosen == options[0]:
        return cfg, None
    full = yardstick_seconds(cfg, bare, options[0])
    trimmed = replace(cfg, reference_rungs=chosen.rungs, reference_seeds=chosen.seeds)
    n, k = len(costs.references), side_by_side(cfg)
    left, whole = yardstick_seconds(cfg, costs, chosen), yardstick_seconds(cfg, bare, chosen)
    if left == 0:
        cost = "(all of it in the results cache: none of the search's time)"
    elif left < whole:
        cost = f"(about {_minutes(left / k)}, the rest in the results cache)"
    else:
        cost = f"(about {_minutes(left / k)})"
    if left:
        cost += ", so that the search has the rest"
    note = (
        f"note: the {n} seed network{'s' * (n > 1)} trained {options[0].label()} would take "
        f"{full / capacity:.0%} of --budget-time {_budget(cfg.budget_time)} "
        f"(about {_minutes(full / k)}): each is trained {chosen.label()} {cost}; all of it "
        f"with --budget-time {_budget(full / YARDSTICK_SHARE / k)}"
    )
    return trimmed, note


def _cannot_fit(cfg: SearchConfig, costs: Costs, least_level: Level, least: float) -> str:
    """The one line of a budget that holds no candidate beside its yardsticks."""
    k = side_by_side(cfg)
    capacity = cfg.budget_time * k
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
    fits.append(f"--budget-time {_budget((yard + least) / k * 1.1)}")
    return (
        f"--budget-time {_budget(cfg.budget_time)} cannot fit one candidate beside its "
        f"yardsticks: the {n} seed network{'s' * (n > 1)} take about "
        f"{_minutes(yard / k)} at the least ({least_level.label()}), a search of "
        f"{cfg.schedule.eta ** (len(cfg.schedule.rungs) - 1)} candidates up to the target about "
        f"{_minutes(least / k)} (timed on this {_device_word(cfg)} with "
        f"{cfg.workers} trial process{'es' * (cfg.workers > 1)}); would fit: " + ", or ".join(fits)
    )


def side_by_side(cfg: SearchConfig) -> int:
    """Trial processes whose trainings run side by side at the speed one was timed at: each
    of a CPU's (one core each); one on a GPU, where processes take turns on the one device."""
    return cfg.workers if resolve_device(cfg.device).type == "cpu" else 1


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
            out.append(sample_spec(trial, budget=cfg.cap, cfg=cfg.space_config))
        study.tell(trial, 0.0)
    return out


def time_costs(
    cfg: SearchConfig,
    data: TrainVal,
    device: torch.device,
    *,
    threads: int,
    cache: ResultCache | None = None,
    timer: Callable[..., float] = seconds_per_image,
) -> Costs | None:
    """Time every reference network of ``cfg`` and ``PROBE_CANDIDATES`` candidates for a few
    steps on ``device``, with ``threads`` threads (as one trial process has), and look up
    which of the references' trainings ``cache`` holds; None when a network could not be
    timed (its few steps failed: the search then runs untrimmed, and says why it stops)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        specs = {key: spec for key, (spec, _) in cfg.reference_specs().items()}
        refs = {key: timer(spec, data, cfg.recipe, device=device) for key, spec in specs.items()}
        probes = [timer(spec, data, cfg.recipe, device=device) for spec in probe_candidates(cfg)]
    except EXPECTED_FAILURES:
        return None
    finally:
        torch.set_num_threads(before)
    candidate = sum(probes) / len(probes) if probes else min(refs.values(), default=0.0)
    return Costs(refs, candidate, held_by_cache(cfg, data, device, cache))


def held_by_cache(
    cfg: SearchConfig, data: TrainVal, device, cache: ResultCache | None
) -> dict[str, frozenset[tuple[str, int]]]:
    """Per reference network of ``cfg``, its trainings ``cache`` holds (see ``_in_cache``)."""
    specs = {key: spec for key, (spec, _) in cfg.reference_specs().items()}
    return {key: _in_cache(cfg, spec, data, device, cache) for key, spec in specs.items()}


def _in_cache(
    cfg: SearchConfig, spec: ArchSpec, data: TrainVal, device, cache: ResultCache | None
) -> frozenset[tuple[str, int]]:
    """The trainings of a reference network at every level that ``cache`` holds: at each
    rung (the search's recipe and seed) and each verify seed at the target, keyed with the
    threads the search's processes train with (``trial_threads``)."""
    if cache is None:
        return frozenset()
    held, threads = set(), trial_threads(cfg.workers)
    for what, _ in planned(cfg, levels(cfg)[0]):
        kind, index = what
        if kind == "rung":
            rung = cfg.schedule.rungs[index]
            recipe, images = replace(cfg.recipe, epochs=rung.epochs), rung.images
        else:
            recipe, images = replace(cfg.recipe, seed=index), cfg.schedule.target.images
        key = cache.key(spec, data.first(images), recipe, device=device, threads=threads)
        if cache.get(key) is not None:
            held.add(what)
    return frozenset(held)


def pending_verification(
    cfg: SearchConfig,
    rates: dict[str, float],
    cached: dict[str, frozenset[tuple[str, int]]],
) -> float:
    """The share (by time, at each reference network's seconds per image ``rates``) of the
    references' verification at ``cfg``'s level that the results cache does not hold
    (``cached``, as ``Costs.held``): what the time budget must still keep for it (1.0 with
    nothing cached, 0.0 when a second run of the same command finds all of it there)."""
    level = Level(cfg.reference_rungs, cfg.seeds_of_references)
    seeds = [(what, ie) for what, ie in planned(cfg, level) if what[0] == "seed"]
    total = left = 0.0
    for key, rate in rates.items():
        for what, image_epochs in seeds:
            total += rate * image_epochs
            if what not in cached.get(key, frozenset()):
                left += rate * image_epochs
    return left / total if total else 1.0


def pending_by_reference(
    cfg: SearchConfig,
    rates: dict[str, float],
    cached: dict[str, frozenset[tuple[str, int]]],
) -> dict[str, float]:
    """Per reference network, the share of its verification at ``cfg``'s level that the
    results cache does not hold (1.0: none of it there)."""
    level = Level(cfg.reference_rungs, cfg.seeds_of_references)
    seeds = [what for what, _ in planned(cfg, level) if what[0] == "seed"]
    if not seeds:
        return dict.fromkeys(rates, 1.0)
    return {
        key: sum(what not in cached.get(key, frozenset()) for what in seeds) / len(seeds)
        for key in rates
    }


def reference_weights(costs: Costs) -> dict[str, float]:
    """Each reference network's image-epoch in a candidate's, as timed at the start."""
    if costs.candidate <= 0:
        return dict.fromkeys(costs.references, 1.0)
    return {key: rate / costs.candidate for key, rate in costs.references.items()}


def reference_weight(costs: Costs) -> float:
    """A reference network's image-epoch in a candidate's (the mean over the references), for
    the time budget's plan of the references' verification."""
    if not costs.references or costs.candidate <= 0:
        return 1.0
    return sum(costs.references.values()) / len(costs.references) / costs.candidate


def _as_given(seconds: float) -> str:
    """A --budget-time as a user would have typed it: ``90s``, ``45m``, ``1h13m``."""
    return f"{seconds:g}s" if seconds % 60 else _budget(seconds)


def empty_front_line(cfg: SearchConfig, sampled: int) -> str:
    """Why a search ends with nothing to verify: no candidate completed the target rung; when
    ``--budget-time`` closed sampling before the first candidate (the trials ran slower than
    they were timed before the search: another job on the machine, a slower data path), what
    the user can change."""
    if cfg.budget_time and not sampled:
        return (
            "no candidate was sampled: what one would commit the search to (its trainings, "
            "its verification beside the seed networks') no longer fitted in --budget-time "
            f"{_as_given(cfg.budget_time)} at the speed the trials ran; a longer --budget-time, "
            "fewer --references or fewer --verify-seeds buys candidates"
        )
    return "no candidate completed the target rung: nothing to verify"
