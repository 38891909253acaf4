"""The checks of a search's settings, each failure one line naming the option: numbers in
range, names known, combinations that work, and caps the search space can meet."""

from __future__ import annotations

from typing import TYPE_CHECKING

from budgetnas.search.errors import SearchError
from budgetnas.search.sampling.pruners import PRUNERS, SINGLE_OBJECTIVE_PRUNERS
from budgetnas.search.sampling.samplers import SAMPLERS, is_multi_objective
from budgetnas.search.sampling.sizing import SIZINGS
from budgetnas.space.sample import smallest_costs

if TYPE_CHECKING:
    from budgetnas.search.study.config import SearchConfig


def check_settings(cfg: SearchConfig) -> None:
    """Every setting in its range and every name known (``SearchError`` otherwise)."""
    from budgetnas.search.study.config import flag

    for name in ("trials", "workers", "heartbeat", "rungs"):
        if getattr(cfg, name) < 1:
            raise SearchError(f"{flag(name)} must be at least 1, got {getattr(cfg, name)}")
    if cfg.concurrent is not None and cfg.concurrent < 1:
        raise SearchError(f"--concurrent must be at least 1 (or auto), got {cfg.concurrent}")
    if cfg.timeout is not None and cfg.timeout <= 0:
        raise SearchError(f"--timeout must be positive, got {cfg.timeout}")
    if cfg.budget_time is not None and cfg.budget_time <= 0:
        raise SearchError(f"--budget-time must be positive, got {cfg.budget_time:g} s")
    if cfg.budget_epochs is not None and cfg.budget_epochs <= 0:
        raise SearchError(f"--budget-epochs must be positive, got {cfg.budget_epochs:g}")
    if cfg.reference_rungs not in ("all", "target"):
        raise SearchError(f"reference rungs must be all or target, got {cfg.reference_rungs!r}")
    if cfg.reference_seeds is not None and cfg.reference_seeds < 0:
        raise SearchError(f"reference seeds must be at least 0, got {cfg.reference_seeds}")
    if cfg.verify_seeds < 0:
        raise SearchError(f"--verify-seeds must be 0 or more, got {cfg.verify_seeds}")
    if cfg.race_seeds < 1:
        raise SearchError(f"--race-seeds must be at least 1, got {cfg.race_seeds}")
    if cfg.rungs > 1 and cfg.pruner in SINGLE_OBJECTIVE_PRUNERS:
        raise SearchError(
            f"--pruner {cfg.pruner} compares trials across fidelities; with --rungs "
            f"{cfg.rungs} use banded (it compares trials of one rung) or none"
        )
    if cfg.pruner not in PRUNERS:
        raise SearchError(f"unknown pruner {cfg.pruner!r}; choose {', '.join(PRUNERS)}")
    if cfg.sampler not in SAMPLERS:
        raise SearchError(f"unknown sampler {cfg.sampler!r}; choose {', '.join(SAMPLERS)}")
    if cfg.sizing not in SIZINGS:
        raise SearchError(f"unknown sizing {cfg.sizing!r}; choose {', '.join(SIZINGS)}")
    if is_multi_objective(cfg.sampler) and cfg.pruner in SINGLE_OBJECTIVE_PRUNERS:
        raise SearchError(
            f"--pruner {cfg.pruner} works only with a single-objective sampler (tpe, "
            f"random); with --sampler {cfg.sampler} use banded or none"
        )
    if cfg.distill is not None and cfg.teacher is None:
        raise SearchError(
            "--distill is the weight of a teacher's soft targets: give --teacher auto or "
            "the path of an exported module"
        )
    if cfg.distill is not None and not 0 < cfg.distill <= 1:
        raise SearchError(f"--distill must be in (0, 1], got {cfg.distill:g}")


def check_fits_space(cfg: SearchConfig) -> None:
    """Each cap at or above the smallest network the space can build (parameters, MACs,
    activation memory)."""
    params, macs, activation = smallest_costs(cfg.space)
    for cap in cfg.caps:
        if cap < params:
            raise SearchError(
                f"budget {cap:,} is below the smallest network the space can build "
                f"({params:,} parameters)"
            )
    if cfg.max_macs is not None:
        if isinstance(cfg.max_macs, bool) or not isinstance(cfg.max_macs, int):
            raise SearchError(f"--max-macs must be a whole number, got {cfg.max_macs!r}")
        if cfg.max_macs < macs:
            raise SearchError(
                f"--max-macs {cfg.max_macs:,} is below the smallest network the space can "
                f"build ({macs:,} MACs)"
            )
    if cfg.max_activation_kb is not None:
        if not cfg.max_activation_kb > 0:
            raise SearchError(f"--max-activation-kb must be positive, got {cfg.max_activation_kb}")
        if cfg.limits(cfg.cap).activation < activation:
            raise SearchError(
                f"--max-activation-kb {cfg.max_activation_kb:g} is below the smallest "
                f"network the space can build ({activation / 1024:.2f} KB at int8)"
            )
