"""A time budget's wiring: its deadline and what the start timed (each seed network's rate,
the share of their verification the cache holds, the end's overhead) kept on the study, so
that every process of a search plans with the same ``TimeBudget``."""

from __future__ import annotations

import optuna

from budgetnas.search.schedule.budgets import Plan, TimeBudget
from budgetnas.search.study.config import SearchConfig

DEADLINE_ATTR = "deadline"  # study user attribute: --budget-time's end, seconds since the epoch


# study user attribute: a reference network's image-epoch in a candidate's, as timed at the start
REFERENCE_WEIGHT_ATTR = "reference_weight"


# the share of the references' verification the results cache did not hold at the start
REFERENCE_PENDING_ATTR = "reference_pending"


# each reference network's seconds per image, as timed at the start (to weigh that share again
# on --resume, with what the cache holds then)
REFERENCE_RATES_ATTR = "reference_rates"


# study user attribute: seconds the end of a search takes besides the race's trainings (its
# helper processes starting and loading the data, the reports), as timed at the start
OVERHEAD_ATTR = "end_overhead_s"


# trainings at once (search.study.concurrency): the K the search settled on, and the images a
# second at that K over one training at a time
CONCURRENT_ATTR, GAIN_ATTR = "concurrent", "concurrent_gain"

STARTED_ENV = "BUDGETNAS_STARTED"  # the command's start (seconds since the epoch), set by the CLI


def time_budget(cfg: SearchConfig, study: optuna.Study) -> TimeBudget | None:
    """The search's time budget: its deadline is on the study (set by the process that
    started or resumed the search), so helper processes and workers keep the same one."""
    deadline = study.user_attrs.get(DEADLINE_ATTR)
    if deadline is None:
        return None
    # per reference network (a study made before they were: one weight and share for all)
    weight = study.user_attrs.get(REFERENCE_WEIGHT_ATTR) or 1.0
    pending = study.user_attrs.get(REFERENCE_PENDING_ATTR)
    pending = 1.0 if pending is None else pending
    return TimeBudget(
        float(deadline),
        plan(cfg, reference_weight=weight, reference_pending=pending),
        workers=cfg.workers,
        overhead_s=float(study.user_attrs.get(OVERHEAD_ATTR) or 0.0),
        race_factor=float(study.user_attrs.get(GAIN_ATTR) or 1.0),
        length_s=float(cfg.budget_time) if cfg.budget_time else None,
    )


def plan(
    cfg: SearchConfig,
    *,
    reference_weight: float | dict[str, float] = 1.0,
    reference_pending: float | dict[str, float] = 1.0,
) -> Plan:
    """The work model of a search: its schedule, final verification and references
    (``reference_weight``: their image-epoch's cost in a candidate's, for a time budget;
    ``reference_pending``: the share of their verification the results cache does not hold)."""
    return Plan(
        cfg.schedule,
        verify_seeds=cfg.verify_seeds,
        references_at_target=len(cfg.reference_specs()),
        reference_seeds=cfg.seeds_of_references,
        reference_weight=reference_weight,
        reference_pending=reference_pending,
    )
