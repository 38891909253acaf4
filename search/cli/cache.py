"""``budgetnas cache``: the results cache's folder, entries and size by age; ``--prune`` trims
it (removing an entry is always safe: its training runs again when needed)."""

from __future__ import annotations

from pathlib import Path

import typer

from budgetnas.search.cli.app import app, opt, user_errors


@app.command(name="cache")
def cache_command(
    cache: Path | None = typer.Option(
        None,
        "--cache",
        help="The results cache folder [default: $BUDGETNAS_CACHE, else "
        "$XDG_CACHE_HOME/budgetnas/results or ~/.cache/budgetnas/results].",
    ),
    prune: bool = typer.Option(
        False,
        "--prune",
        help="Remove entries: those not used for --older-than, then the oldest until the cache "
        "holds at most --max-size; and the unfinished writes of killed processes.",
    ),
    older_than: str | None = opt(
        "With --prune: remove the entries not written or reused for this long: 30d, 12h, 90m, "
        "2w [default: none]."
    ),
    max_size: str | None = opt(
        "With --prune: remove the oldest entries until the cache holds at most this much: "
        "500M, 2G, 200k (units of 1,024 bytes) [default: none]."
    ),
) -> None:
    """The results cache: its folder, entries and size by age; --prune trims it. Removing
    entries is always safe: a training whose entry is gone is trained again when needed."""
    from budgetnas.search.cache.admin import listing, prune_limits, pruned_line, scan
    from budgetnas.search.cache.admin import prune as prune_cache
    from budgetnas.search.cache.store import CACHE_ENV, open_cache
    from budgetnas.search.errors import SearchError

    off = f"the results cache is off (${CACHE_ENV}=off); --cache DIR names a folder"
    with user_errors():
        age, size = prune_limits(prune=prune, older_than=older_than, max_size=max_size)
        found = open_cache(cache)
        if found is None and prune:
            raise SearchError(off + ": nothing to prune")
    if found is None:
        typer.echo(off)
    elif not prune:
        for line in listing(scan(found.root)):
            typer.echo(line)
    else:
        done = prune_cache(found.root, older_than=age, max_size=size)
        typer.echo(pruned_line(found.root, done))
