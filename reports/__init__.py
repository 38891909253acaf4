"""Stored trials -> pandas frame -> Pareto front (``reports.front``, below the search);
plotly HTML and CSV reports (``reports.page``, above it)."""

from budgetnas.reports.front.frame import trials_frame
from budgetnas.reports.front.pareto import best_row, hypervolume, pareto_front

__all__ = [
    "ReportFiles",
    "best_row",
    "hypervolume",
    "pareto_front",
    "trials_frame",
    "write_reports",
]


def __getattr__(name: str):
    """``write_reports`` and ``ReportFiles`` draw the page (``reports.page``): imported on use,
    so that the numbers (``reports.front``) import nothing above them."""
    if name in ("write_reports", "ReportFiles"):
        from budgetnas.reports.page import html

        return getattr(html, name)
    raise AttributeError(f"module 'budgetnas.reports' has no attribute {name!r}")
