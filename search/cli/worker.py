"""``budgetnas worker``: join a search started elsewhere (a shared storage), or be a helper
process of one (``--workers``), and train its candidates here."""

from __future__ import annotations

from pathlib import Path

import typer

from budgetnas.search.cli.app import (
    CACHE_HELP,
    GRAPHS_HELP,
    NO_CACHE_HELP,
    app,
    eager_steps,
    user_errors,
)
from budgetnas.search.study.config import SearchConfig


@app.command()
def worker(
    storage: str = typer.Option(..., help="The shared study's storage, e.g. postgresql://..."),
    study: str = typer.Option(
        SearchConfig.study_name, "--study", help="Study name inside the storage."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Local folder for this worker's weights."),
    device: str | None = typer.Option(None, help="Device here [default: the study's]."),
    data_dir: Path | None = typer.Option(
        None, help="Data root on this machine [default: the study's]."
    ),
    concurrent: str | None = typer.Option(
        None,
        help="Candidates trained at once here (as search's --concurrent) [default: the search's].",
    ),
    cache: Path | None = typer.Option(None, "--cache", help=CACHE_HELP),
    no_cache: bool = typer.Option(False, "--no-cache", help=NO_CACHE_HELP),
    graphs: bool = typer.Option(True, "--graphs/--no-graphs", help=GRAPHS_HELP),
    quiet: bool = typer.Option(False, help="No progress lines."),
    # a helper process of `search --workers N` (search.processes): its index, which seeds its
    # sampler with the trials the study held at the start; it ends with the search
    helper_index: int | None = typer.Option(None, hidden=True),
    helper_trials_before: int = typer.Option(0, hidden=True),
) -> None:
    """Join a search started elsewhere (shared storage) and train its candidates here."""
    try:
        if helper_index is not None:
            from budgetnas.search.study import processes

            processes.watch_parent()
        from budgetnas.search.cache.store import open_cache
        from budgetnas.search.study import driver
        from budgetnas.search.study.concurrency import parse_concurrent

        eager_steps(graphs)
        with user_errors():
            driver.run_worker(
                storage,
                study,
                out=out,
                device=device,
                data_dir=str(data_dir.resolve()) if data_dir else None,
                quiet=quiet,
                cache=open_cache(cache, enabled=not no_cache),
                concurrent=parse_concurrent(concurrent) if concurrent is not None else None,
                helper_index=helper_index,
                trials_before=helper_trials_before,
            )
    except KeyboardInterrupt:  # a helper is stopped by its search, which says so
        if helper_index is None:
            typer.echo("\ninterrupted: finished trials are kept in the study", err=True)
        raise typer.Exit(130) from None
