"""``budgetnas count``, ``space`` and ``zoo``: a spec's exact costs, the search space as a file,
the hand-made seed networks; nothing trained."""

from __future__ import annotations

from pathlib import Path

import typer

from budgetnas.search.cli.app import app, user_errors
from budgetnas.search.errors import SearchError


@app.command()
def count(
    spec_file: Path = typer.Argument(..., help="A spec as JSON (see `budgetnas zoo --spec 001`)."),
) -> None:
    """Exact parameters, MACs, shapes and receptive field of a hand-written spec, per block."""
    from budgetnas.space.spec import ArchSpec
    from budgetnas.space.tables import count_lines

    with user_errors():
        if not spec_file.is_file():
            raise SearchError(f"spec file {spec_file} does not exist")
        spec = ArchSpec.from_json(spec_file.read_text(encoding="utf-8", errors="replace"))
    for line in count_lines(spec):
        typer.echo(line)


@app.command()
def space(
    file: Path | None = typer.Argument(
        None, help="A space file to check [default: none, with --show: print a shipped one]."
    ),
    show: bool = typer.Option(
        False, "--show", help="Print the default space file (to copy and edit)."
    ),
    rich: bool = typer.Option(False, "--rich", help="With --show: the rich space instead."),
) -> None:
    """The search space as a file: print the default (--show), or check an edited one."""
    from budgetnas.space.spacefile import differences_from_default, read, shipped_text, space_config

    with user_errors():
        if file is None:
            if not show:
                raise SearchError("give a space file to check, or --show to print the default")
            typer.echo(shipped_text("rich" if rich else "default"), nl=False)
            return
        cfg = space_config(read(file), {}, name=f"space file {file}")
    changed = differences_from_default(cfg)
    same = (
        "the default space" if not changed else f"differs from the default in: {', '.join(changed)}"
    )
    typer.echo(f"{file}: a valid space; {same}")


@app.command()
def zoo(
    spec: str | None = typer.Option(
        None, help="Print this entry's spec as JSON (e.g. 001) [default: the table of all]."
    ),
) -> None:
    """The hand-made seed networks as specs, with exact parameter counts."""
    from budgetnas.space.tables import zoo_lines
    from budgetnas.space.zoo import ZOO

    with user_errors():
        if spec is not None and spec not in ZOO:
            raise SearchError(f"no zoo entry {spec!r}; entries: {', '.join(ZOO)}")
    for line in [ZOO[spec].spec.to_json(indent=2)] if spec is not None else zoo_lines():
        typer.echo(line)
