"""Stored trials -> pandas frame -> Pareto front; plotly HTML and CSV reports."""

from budgetnas.reports.front.frame import trials_frame
from budgetnas.reports.front.pareto import best_row, hypervolume, pareto_front
from budgetnas.reports.page.html import ReportFiles, write_reports

__all__ = [
    "ReportFiles",
    "best_row",
    "hypervolume",
    "pareto_front",
    "trials_frame",
    "write_reports",
]
