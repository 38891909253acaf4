"""``budgetnas report``: (re)write a run's reports and print its last lines."""

from __future__ import annotations

from pathlib import Path

import typer

from budgetnas.search.cli.app import app, user_errors, write_reports


@app.command()
def report(
    run: Path = typer.Argument(..., help="A run folder made by `budgetnas search`."),
) -> None:
    """(Re)write report.html, trials.csv and pareto.csv of a run from its study."""
    from budgetnas.search.study.runs import open_run

    with user_errors():
        write_reports(*open_run(run))
