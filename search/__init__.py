"""The Optuna search: config, study, objective, export, and the ``budgetnas`` CLI."""

from search.budget import format_params, parse_budget
from search.errors import SearchError
from search.export import ExportResult, export_trial
from search.run import SearchConfig, open_run, run_search, summary_counts, trial_spec

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
