"""``budgetnas export``: the network to take (the race's answer, or ``--trial N``) with its best
weights, as a module or ONNX (float or int8), and what it scores on the test set."""

from __future__ import annotations

from pathlib import Path

import typer

from budgetnas.search.cli.app import app, user_errors


@app.command()
def export(
    run: Path = typer.Argument(..., help="A run folder made by `budgetnas search`."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="The file to write: a .py module (weights: .pt), or a .onnx model."
    ),
    trial: int | None = typer.Option(
        None,
        help="Export the network of this trial, with the best weights it has anywhere in the "
        "run (its promotions to higher rungs, verify seeds of any of them) [default: the best "
        "verified searched network, else the search's best under the cap; never a reference "
        "network].",
    ),
    format: str = typer.Option(
        "py",
        "--format",
        help="py: a module that needs only torch; onnx: an ONNX model (needs the deploy extra: "
        'pip install "budgetnas[deploy]").',
    ),
    int8: bool = typer.Option(
        False,
        help="With --format onnx: also an int8 model (*.int8.onnx), post-training static "
        "quantization calibrated on 1,000 training images.",
    ),
    refit: bool = typer.Option(
        False,
        help="Train the chosen network once more as its shipped weights were (recipe, seed, "
        "training images) on those images and the validation split together, and ship that: "
        "more data, but no validation accuracy left to check it on.",
    ),
    force: bool = typer.Option(False, help="Overwrite existing files."),
    data_dir: Path | None = typer.Option(
        None, help="Data root for the test set [default: the run's]."
    ),
    device: str = typer.Option("cpu", help="Device for the test evaluation."),
) -> None:
    """Write a trained network as a standalone module + weights (or ONNX, optionally int8);
    print which network and which weights (the highest fidelity it was trained at, by the
    search or by verify, the best validation seed there) and its test accuracy."""
    from budgetnas.search.handback.export import export_trial

    with user_errors():
        res = export_trial(
            run,
            out=out,
            trial=trial,
            force=force,
            data_dir=data_dir,
            device=device,
            format=format,
            int8=int8,
            refit=refit,
        )
    for line in res.lines():
        typer.echo(line)
