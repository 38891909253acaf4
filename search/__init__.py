"""budgetnas's search, by stage: ``study`` (config, storage, processes, the driver),
``sampling``, ``schedule``, ``cache``, then ``verification`` (the race), ``handback``
(export), and ``cli`` on top; ``pipeline`` runs a search from start to end. The public API is
re-exported here."""

from budgetnas.search.errors import SearchError
from budgetnas.search.handback.export import ExportResult, export_trial
from budgetnas.search.study.config import SearchConfig
from budgetnas.search.study.options import new_config
from budgetnas.search.study.runs import open_run, read_config, summary_counts, trial_spec
from budgetnas.search.units import format_params, parse_budget, parse_ladder

__all__ = [
    "ExportResult",
    "SearchConfig",
    "SearchError",
    "export_trial",
    "format_params",
    "new_config",
    "open_run",
    "parse_budget",
    "parse_ladder",
    "read_config",
    "run_search",
    "run_worker",
    "summary_counts",
    "trial_spec",
    "verify_run",
]


def __getattr__(name: str):
    """``run_search``, ``run_worker`` and ``verify_run`` import the training stack: on use only,
    so that reading a run (reports, export) does not."""
    if name == "run_search":
        from budgetnas.search.pipeline import run_search

        return run_search
    if name == "run_worker":
        from budgetnas.search.study.driver import run_worker

        return run_worker
    if name == "verify_run":
        from budgetnas.search.verification.retrain import verify_run

        return verify_run
    raise AttributeError(f"module 'budgetnas.search' has no attribute {name!r}")
