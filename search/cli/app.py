"""The ``budgetnas`` application: what every command shares.

Each command is a module of this package (``search``, ``worker``, ``report``, ``export``,
``verify``, ``cache``, ``bench``, and ``count``/``space``/``zoo`` in ``inspect``): it parses,
builds a config and calls one library function. User mistakes (a bad budget, missing data, an
unknown dataset, a run folder that is not there, settings that do not match a study) end as one
line on stderr and exit code 1, all mapped in ``user_errors``; Ctrl-C ends a search with its
report written and exit code 130. Options that are not given are ``None`` and take the
library's defaults.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer

from budgetnas.search.errors import SearchError
from budgetnas.search.study.config import SearchConfig
from budgetnas.space.spec import SpecError
from budgetnas.trainers.datasets import DataError
from budgetnas.trainers.recipe import ONE_EPOCH_DEFAULTS, ConfigError

USER_ERRORS = (SearchError, SpecError, DataError, ConfigError)

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,  # help texts are plain: "[default: 15]" must not be read as markup
    pretty_exceptions_enable=False,
    help=(
        "Find the most accurate small CNN under a hard parameter cap.\n\n"
        "search: sample and train candidates under --budget (MNIST-like data or your own "
        "images, --data), ending with a race of the front and the seed networks on new seeds "
        "and the verdict; report: (re)write the report of a run; export: write the race's "
        "answer (or --trial N) as a standalone module or ONNX; verify: retrain chosen "
        "networks with new seeds; space: print or check a search space file; count: exact "
        "costs of a spec; zoo: the hand-made seed networks; cache: see or trim the results "
        "cache."
    ),
)


@contextmanager
def user_errors() -> Iterator[None]:
    """The one place where a library error becomes ``error: ...`` and exit code 1."""
    try:
        yield
    except USER_ERRORS as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None


def write_reports(cfg: SearchConfig, study) -> None:
    from budgetnas.reports.front.compute import compute_line
    from budgetnas.reports.front.sizes import sizes_line
    from budgetnas.reports.page.run import sizes_table, spent_table, write_run_reports
    from budgetnas.search.study.runs import counts_text
    from budgetnas.search.verification.standing import race_lines

    files, counts = write_run_reports(cfg, study)
    typer.echo(counts_text(counts, rungs=cfg.rungs), err=True)
    typer.echo(sizes_line(sizes_table(cfg, study)), err=True)
    typer.echo(compute_line(spent_table(study)), err=True)
    typer.echo(f"wrote {files.html}, {files.trials_csv.name}, {files.pareto_csv.name}", err=True)
    for line in race_lines(cfg, study):  # the answer and the verdict: the last word
        typer.echo(line, err=True)


ONE_EPOCH = ONE_EPOCH_DEFAULTS


def opt(help: str, *names: str) -> Any:
    """An option that stays ``None`` unless given, so the library's default applies."""
    return typer.Option(None, *names, help=help)


CACHE_HELP = (
    "Results cache shared by every search on this machine: a finished training (a reference "
    "network, a verify seed, a candidate met again) and its weights, keyed by everything that "
    "determines it, is reused instead of trained again [default: $BUDGETNAS_CACHE, else "
    "$XDG_CACHE_HOME/budgetnas/results or ~/.cache/budgetnas/results]."
)
NO_CACHE_HELP = "Train everything; read and write no results cache [default: the cache is used]."
GRAPHS_HELP = (
    "On CUDA, capture each training's step and validation as CUDA graphs after a warm-up (a "
    "capture that fails goes on eagerly with a one-line note); --no-graphs: eager steps. Its "
    "helper processes follow it. No effect on a CPU."
)


def eager_steps(graphs: bool) -> None:
    """``--no-graphs``: this process and the processes it starts train with eager steps."""
    if not graphs:
        from budgetnas.trainers.graphs import GRAPHS_ENV

        os.environ[GRAPHS_ENV] = "0"


def _process_start() -> float:
    """When this process started (seconds since the epoch): on Linux from /proc, which
    counts the interpreter's start and its imports; elsewhere now."""
    import os
    import time

    try:
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return time.time()


def main() -> None:
    import os

    import budgetnas.search.cli  # noqa: F401 - registers every command
    from budgetnas.search.study.timing import STARTED_ENV

    # a time budget counts from the command's start, its imports included
    os.environ[STARTED_ENV] = f"{_process_start():.3f}"
    app()
