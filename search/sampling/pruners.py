"""Pruners. ``BandedMedianPruner`` compares a trial only with trials of similar size.

Optuna's ``MedianPruner`` compares every trial with every other: under a 10K cap, a 4K
network that is doing well for its size is cut because 9K networks are ahead of it at the
same epoch, and the low end of the Pareto front stays empty. The banded rule asks "is this
trial below the median of completed trials within a factor ``band`` of its parameter count,
at this epoch?" instead.

The rule reads every trial's validation curve from its ``val_curve`` user attribute, so the
same rule serves Optuna's pruning API (single-objective studies) and runs inside the
objective for multi-objective studies, which Optuna's pruners do not support.
"""

from __future__ import annotations

import math
import statistics

import optuna
from optuna.trial import FrozenTrial, TrialState

PRUNERS = ("banded", "median", "hyperband", "none")
# Pruners that work through Optuna's single-objective pruning API only.
SINGLE_OBJECTIVE_PRUNERS = ("median", "hyperband")


class BandedMedianPruner(optuna.pruners.BasePruner):
    """Median pruning within a parameter band.

    ``band``: peers have between params / band and params * band parameters (read from the
    ``params`` user attribute every trial stores before it trains). ``n_min_peers``: below
    this many completed peers with a value at the step, the trial is not pruned.
    """

    def __init__(self, *, band: float = 1.5, n_min_peers: int = 3, n_warmup_steps: int = 0):
        if band <= 1:
            raise ValueError(f"band must be > 1, got {band}")
        self.band = band
        self.n_min_peers = n_min_peers
        self.n_warmup_steps = n_warmup_steps

    def peers(
        self, study: optuna.Study, params: int | None, step: int, rung: int = 0
    ) -> list[float]:
        """Validation accuracy at ``step`` of the completed trials of similar size trained at
        the same ``rung`` (the same fidelity)."""
        values = []
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            curve = t.user_attrs.get("val_curve") or []
            if len(curve) <= step or t.user_attrs.get("duplicate_of") is not None:
                continue
            if int(t.user_attrs.get("rung") or 0) != rung:
                continue
            other = t.user_attrs.get("params")
            if params and other and abs(math.log(other / params)) > math.log(self.band):
                continue
            values.append(curve[step])
        return values

    def decide(
        self, study: optuna.Study, params: int | None, step: int, value: float, *, rung: int = 0
    ) -> bool:
        """Prune a trial of ``params`` parameters at ``rung`` whose accuracy at ``step`` is
        ``value``?"""
        if step < self.n_warmup_steps:
            return False
        values = [v for v in self.peers(study, params, step, rung) if not math.isnan(v)]
        if len(values) < self.n_min_peers:
            return False
        return value < statistics.median(values)

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        if step is None:
            return False
        return self.decide(
            study,
            trial.user_attrs.get("params"),
            step,
            trial.intermediate_values[step],
            rung=int(trial.user_attrs.get("rung") or 0),
        )


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    if name == "banded":
        return BandedMedianPruner()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, reduction_factor=3)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"unknown pruner {name!r}; choose {', '.join(PRUNERS)}")
