"""Pruners. ``BandedMedianPruner`` compares a trial only with trials of similar size.

Optuna's ``MedianPruner`` compares every trial with every other: under a 10K cap, a 4K
network that is doing well for its size is cut because 9K networks are ahead of it at the
same epoch, and the low end of the Pareto front stays empty. The banded pruner asks "is this
trial below the median of completed trials within a factor ``band`` of its parameter count,
at this epoch?" instead.
"""

from __future__ import annotations

import math
import statistics

import optuna
from optuna.trial import FrozenTrial, TrialState

PRUNERS = ("banded", "median", "hyperband", "none")


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

    def peers(self, study: optuna.Study, trial: FrozenTrial, step: int) -> list[float]:
        params = trial.user_attrs.get("params")
        values = []
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if step not in t.intermediate_values or t.user_attrs.get("duplicate_of") is not None:
                continue
            other = t.user_attrs.get("params")
            if params and other and abs(math.log(other / params)) > math.log(self.band):
                continue
            values.append(t.intermediate_values[step])
        return values

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        if step is None or step < self.n_warmup_steps:
            return False
        values = [v for v in self.peers(study, trial, step) if not math.isnan(v)]
        if len(values) < self.n_min_peers:
            return False
        return trial.intermediate_values[step] < statistics.median(values)


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
