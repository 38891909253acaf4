"""The Optuna search: config, study, objective, export, and the ``budgetnas`` CLI."""

from budgetnas.search.budget import format_params, parse_budget
from budgetnas.search.errors import SearchError
from budgetnas.search.export import ExportResult, export_trial
from budgetnas.search.run import SearchConfig, open_run, run_search, summary_counts, trial_spec

__all__ = [
    "ExportResult",
    "SearchConfig",
    "SearchError",
    "export_trial",
    "format_params",
    "open_run",
    "parse_budget",
    "run_search",
    "summary_counts",
    "trial_spec",
]
