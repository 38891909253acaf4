"""Samplers: which candidates a search proposes next.

``motpe`` and ``nsga2`` are multi-objective: a trial's values are (validation accuracy,
parameters), accuracy maximised and parameters minimised, so the sampler models the whole
accuracy-vs-size front instead of drifting towards the largest networks that fit. Optuna's
pruners do not support several objectives; with these samplers the banded pruning rule runs
inside the objective (``search.pruners.BandedMedianPruner.decide``). ``tpe`` is
single-objective TPE on validation accuracy; ``random`` samples independently (a baseline).

Every sampler is wrapped in ``SearchedOnly``: reference networks are trials of the study (the
reports and the pruner compare with them), but their architectures lie outside the sampled
parameterization, so a sampler never sees them; nor the promotions of its candidates to
higher-fidelity rungs (``search.schedule``), whose accuracies are at another fidelity. With
the same seed (and no pruning, which does compare with them), a search proposes the same
candidates with and without references.

NSGA-II evolves only the parameters every trial of its population has (Optuna's intersection
search space) and draws the others at random; so with ``nsga2`` every parameter of the space
is suggested on every trial (``flat_space``), the ones a candidate does not use included, and
the whole architecture evolves.

With ``spread`` sizing (``search.sizing``) a candidate's ``size`` is assigned, not sampled:
the wrapper keeps it out of the inner sampler's relative search space and answers its
suggestion with the value stored on the trial; its distribution stays the same.
"""

from __future__ import annotations

import warnings
from collections.abc import Container, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from budgetnas.search.sampling.sizing import ASSIGNED, FRACTION_ATTR, SIZE_PARAM
from budgetnas.search.schedule.trials import is_reference, is_sampled

SAMPLERS = ("motpe", "tpe", "nsga2", "random")
MULTI_OBJECTIVE = ("motpe", "nsga2")
STARTUP_TRIALS = 10


def is_multi_objective(name: str) -> bool:
    return name in MULTI_OBJECTIVE


def flat_space(name: str) -> bool:
    """Does this sampler need every parameter suggested on every trial? (NSGA-II does.)"""
    return name == "nsga2"


def directions(name: str) -> list[str]:
    """Study directions: accuracy up, and for a multi-objective sampler parameters down."""
    return ["maximize", "minimize"] if is_multi_objective(name) else ["maximize"]


def metric_names(name: str) -> list[str]:
    """The objectives' names, as ``directions`` orders them (what optuna-dashboard shows)."""
    return ["validation accuracy", "parameters"][: len(directions(name))]


class _SearchedTrials:
    """A study as a sampler should see it: the candidates it proposed (at rung 0), not the
    reference networks nor the promotions of candidates to higher rungs (their accuracy is
    at another fidelity).

    Everything else (storage, directions, system attributes) is the study's own."""

    def __init__(self, study: Any) -> None:
        self._study = study

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(
        self,
        deepcopy: bool = True,
        states: Container[TrialState] | None = None,
        use_cache: bool = False,
    ) -> list[FrozenTrial]:
        trials = self._study._get_trials(deepcopy=deepcopy, states=states, use_cache=use_cache)
        return [t for t in trials if is_sampled(t)]

    def get_trials(
        self, deepcopy: bool = True, states: Container[TrialState] | None = None
    ) -> list[FrozenTrial]:
        return [t for t in self._study.get_trials(deepcopy, states) if is_sampled(t)]

    @property
    def trials(self) -> list[FrozenTrial]:
        return self.get_trials()


class SearchedOnly(optuna.samplers.BaseSampler):
    """``sampler``, blind to reference networks: it is not called for a reference trial (so
    its random state does not move) and never sees one among the study's trials.

    ``assigned_size``: the ``size`` suggestion is answered with the fraction stored on the
    trial (``search.sizing``), never sampled jointly with the structure."""

    def __init__(
        self, sampler: optuna.samplers.BaseSampler, *, assigned_size: bool = False
    ) -> None:
        self.inner = sampler
        self.assigned_size = assigned_size

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        if is_reference(trial):
            return {}
        space = self.inner.infer_relative_search_space(_SearchedTrials(study), trial)
        if self.assigned_size:
            space = {k: v for k, v in space.items() if k != SIZE_PARAM}
        return space

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if is_reference(trial):
            return {}
        params = self.inner.sample_relative(_SearchedTrials(study), trial, search_space)
        if self.assigned_size:  # TPE's groups sample their own spaces, "size" included
            params = {k: v for k, v in params.items() if k != SIZE_PARAM}
        return params

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        assigned = trial.user_attrs.get(FRACTION_ATTR)
        if self.assigned_size and param_name == SIZE_PARAM and assigned is not None:
            low, high = param_distribution.low, param_distribution.high  # type: ignore[attr-defined]
            return min(high, max(low, float(assigned)))
        return self.inner.sample_independent(
            _SearchedTrials(study), trial, param_name, param_distribution
        )

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if not is_reference(trial):
            self.inner.before_trial(_SearchedTrials(study), trial)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        if not is_reference(trial):
            self.inner.after_trial(_SearchedTrials(study), trial, state, values)

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()


def _inner(name: str, seed: int) -> optuna.samplers.BaseSampler:
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


def make_sampler(name: str, seed: int, sizing: str = "sampler") -> optuna.samplers.BaseSampler:
    """The sampler ``name`` seeded with ``seed``, blind to reference networks; with
    ``sizing`` ``spread`` it leaves each candidate's size to ``search.sizing``."""
    return SearchedOnly(_inner(name, seed), assigned_size=sizing in ASSIGNED)
