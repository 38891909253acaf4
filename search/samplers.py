"""Samplers: which candidates a search proposes next.

``motpe`` and ``nsga2`` are multi-objective: a trial's values are (validation accuracy,
parameters), accuracy maximised and parameters minimised, so the sampler models the whole
accuracy-vs-size front instead of drifting towards the largest networks that fit. Optuna's
pruners do not support several objectives; with these samplers the banded pruning rule runs
inside the objective (``search.pruners.banded_prune``). ``tpe`` is single-objective TPE on
validation accuracy; ``random`` samples independently (a baseline).
"""

from __future__ import annotations

import warnings

import optuna

SAMPLERS = ("motpe", "tpe", "nsga2", "random")
MULTI_OBJECTIVE = ("motpe", "nsga2")
STARTUP_TRIALS = 10


def is_multi_objective(name: str) -> bool:
    return name in MULTI_OBJECTIVE


def directions(name: str) -> list[str]:
    """Study directions: accuracy up, and for a multi-objective sampler parameters down."""
    return ["maximize", "minimize"] if is_multi_objective(name) else ["maximize"]


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if name in ("tpe", "motpe"):
            return optuna.samplers.TPESampler(
                seed=seed,
                multivariate=True,
                group=True,
                n_startup_trials=STARTUP_TRIALS,
                constant_liar=True,
            )
        if name == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed, population_size=STARTUP_TRIALS)
        if name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"unknown sampler {name!r}; choose {', '.join(SAMPLERS)}")
