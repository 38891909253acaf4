"""Stored trials -> pandas frame -> Pareto front; plotly HTML and CSV reports."""

from budgetnas.reports.frame import trials_frame
from budgetnas.reports.html import ReportFiles, write_reports
from budgetnas.reports.pareto import best_row, hypervolume, pareto_front

__all__ = [
    "ReportFiles",
    "best_row",
    "hypervolume",
    "pareto_front",
    "trials_frame",
    "write_reports",
]
