"""How many candidates each trial process trains at once (``--concurrent K``): given, or
measured at the start of a search.

On a CPU nothing runs at once (the trainings' steps take turns), so the default there is
one. On CUDA the best K depends on the card and on how small the networks are, so a search
measures it before its first trial: a few seconds of K = 1, 2, 4, 8, 16 trainings of its own
candidates (networks sampled from its space under its largest cap, at its recipe and batch)
side by side, in interleaved turns (``trainers.bench_variants``), and takes the K that trains
the most images a second (the smallest within ``NEAR_BEST`` of the most: more in flight only
costs memory). The header says which K and the rates it measured; the K and its gain over
one training at a time are kept on the study, where the search's helper processes read them
and the time budget plans the race (trained one network at a time) with them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import optuna
import torch

from budgetnas.search.errors import SearchError
from budgetnas.search.study.config import SearchConfig
from budgetnas.search.study.timing import CONCURRENT_ATTR, GAIN_ATTR
from budgetnas.space.sample import Rejected, sample_spec
from budgetnas.space.spec import ArchSpec
from budgetnas.trainers import graphs as graph_module
from budgetnas.trainers.bench_variants import WARM_ROUNDS, at_once_variant, interleaved
from budgetnas.trainers.data import TrainVal

PROBE_KS = (1, 2, 4, 8, 16)
PROBE_STEPS = 12  # timed steps of each K, after WARM_ROUNDS untimed ones
PROBE_NETWORKS = 4  # sampled networks, trained in turn by the K trainings
NEAR_BEST = 0.95


def parse_concurrent(text: str | int) -> int | None:
    """``--concurrent``: a whole number of trainings, or ``auto`` (None: measured on CUDA,
    one on a CPU)."""
    if isinstance(text, int):
        return text
    if text.strip().lower() == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise SearchError(
            f"--concurrent takes a number of trainings at once or auto, got {text!r}"
        ) from None


def probe_specs(cfg: SearchConfig, count: int = PROBE_NETWORKS) -> list[ArchSpec]:
    """``count`` networks sampled at random from the search's space under its largest cap
    (the search's own sampler and study are not touched)."""
    cap = cfg.caps[-1]
    limits = cfg.limits(cap)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=cfg.seed))
    specs: list[ArchSpec] = []
    for _ in range(50 * count):
        if len(specs) == count:
            break
        try:
            specs.append(
                sample_spec(
                    study.ask(),
                    budget=cap,
                    cfg=cfg.space_config,
                    macs=limits.macs,
                    activation=limits.activation,
                    flat=True,
                )
            )
        except Rejected:
            continue
    return specs


def measure(
    specs: Sequence[ArchSpec],
    data: TrainVal,
    cfg: SearchConfig,
    *,
    device: torch.device,
    ks: Sequence[int] = PROBE_KS,
    steps: int = PROBE_STEPS,
) -> dict[int, float]:
    """Training images a second with each K of ``ks`` trainings at once (of ``specs`` in
    turn), at the search's recipe; empty when the data is too small for ``steps`` steps."""
    batch = cfg.recipe.batch_size
    steps = min(steps, len(data.train) // batch - WARM_ROUNDS - 1)
    if steps < 2 or not specs:
        return {}
    recipe = replace(cfg.recipe, epochs=1, distill=0.0, teacher=None)
    graphed = graph_module.use_graphs(device, None)
    variants = [
        at_once_variant(
            f"{k} at once",
            specs,
            data,
            batch=batch,
            steps=steps,
            trainings=k,
            device=device,
            cfg=recipe,
            graphs=graphed,
        )
        for k in ks
    ]
    seconds = interleaved(variants, steps=steps, device=device)
    return {k: k * steps * batch / s for k, s in zip(ks, seconds, strict=True)}


def choose(rates: dict[int, float]) -> int:
    """The smallest K within ``NEAR_BEST`` of the most images a second (1 with no rates)."""
    if not rates:
        return 1
    best = max(rates.values())
    return min(k for k, rate in rates.items() if rate >= NEAR_BEST * best)


def settle(
    cfg: SearchConfig, study: optuna.Study, device: torch.device, data: TrainVal
) -> tuple[int, list[str]]:
    """This search's K (the first process: given, measured on CUDA, else one), kept on the
    study with its gain, and the header's notes on it."""
    if cfg.concurrent is None and device.type != "cuda":
        return _kept(study, 1, 1.0), []
    if device.type != "cuda" or cfg.concurrent == 1:  # nothing at once: no gain to measure
        return _kept(study, cfg.concurrent or 1, 1.0), []
    ks = PROBE_KS if cfg.concurrent is None else sorted({1, cfg.concurrent})
    first = data.first(cfg.schedule.rungs[0].images)
    specs = probe_specs(cfg)
    rates = measure(specs, first, cfg, device=device, ks=ks)
    k = choose(rates) if cfg.concurrent is None else cfg.concurrent
    if not rates:
        why = "no network to measure with" if not specs else "too few training images"
        return _kept(study, k, 1.0), [f"note: {why}: {k} candidate(s) at once, unmeasured"]
    gain = rates[k] / rates[1]
    measured = ", ".join(f"{n}: {rate:,.0f}" for n, rate in rates.items())
    how = "measured" if cfg.concurrent is None else "given"
    note = (
        f"note: {k} candidate{'s' * (k > 1)} at once in each process ({how}; training images "
        f"a second at K = {measured})"
    )
    return _kept(study, k, gain), [note]


def _kept(study: optuna.Study, k: int, gain: float) -> int:
    study.set_user_attr(CONCURRENT_ATTR, k)
    study.set_user_attr(GAIN_ATTR, round(gain, 4))
    return k


def joined(cfg: SearchConfig, study: optuna.Study) -> int:
    """A helper's or a joining worker's K: its own ``--concurrent``, else the search's."""
    if cfg.concurrent is not None:
        return cfg.concurrent
    return int(study.user_attrs.get(CONCURRENT_ATTR) or 1)
