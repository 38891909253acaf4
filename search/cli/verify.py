"""``budgetnas verify``: chosen networks trained again with new seeds, at the search's fidelity
or another; test accuracy mean ± std, one line per seed as it finishes."""

from __future__ import annotations

from pathlib import Path

import typer

from budgetnas.search.cli.app import (
    CACHE_HELP,
    GRAPHS_HELP,
    NO_CACHE_HELP,
    app,
    eager_steps,
    opt,
    user_errors,
    write_reports,
)


@app.command()
def verify(
    run: Path = typer.Argument(..., help="A run folder made by `budgetnas search`."),
    trial: list[int] | None = typer.Option(
        None,
        help="Verify this trial (repeatable) [default, without --top and --zoo: the searched "
        "Pareto front].",
    ),
    top: int | None = typer.Option(
        None,
        help="Verify the K best searched trials by validation (reference networks: --zoo) "
        "[default: none].",
    ),
    zoo: list[str] | None = typer.Option(
        None,
        help="Also verify a seed network from the zoo with the run's recipe (repeatable); "
        "alone, only the zoo networks [default: none].",
    ),
    seeds: int = typer.Option(
        3, help="Seeds per architecture: 0, 1, 2, ... skipping the one the search trained with."
    ),
    epochs: int | None = opt("Epochs [default: the searched recipe's]."),
    batch_size: int | None = opt("Batch size [default: the searched recipe's]."),
    lr: float | None = opt("Peak learning rate [default: the searched recipe's]."),
    momentum: float | None = opt("SGD momentum [default: the searched recipe's]."),
    weight_decay: float | None = opt("Weight decay [default: the searched recipe's]."),
    augment: float | None = opt("Augmentation strength [default: the searched recipe's]."),
    label_smoothing: float | None = opt("Label smoothing [default: the searched recipe's]."),
    train_subset: int | None = opt(
        "Train on a subset (quick checks only) [default: the full training split]."
    ),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N."),
    precision: str | None = opt(
        "fp32, bf16, or auto (bf16 on a CPU that computes bf16 in hardware, fp32 elsewhere), "
        "as for search; recorded with each result, so two precisions are never one mean "
        "[default: the run's]."
    ),
    data_dir: Path | None = typer.Option(None, help="Data root [default: the run's]."),
    cache: Path | None = typer.Option(None, "--cache", help=CACHE_HELP),
    no_cache: bool = typer.Option(False, "--no-cache", help=NO_CACHE_HELP),
    graphs: bool = typer.Option(True, "--graphs/--no-graphs", help=GRAPHS_HELP),
    fuse_seeds: bool | None = typer.Option(
        None,
        "--fuse-seeds/--no-fuse-seeds",
        help="Train a network's new seeds at once as one fused model (grouped convolutions, "
        "one copy per seed, each seeing what it would alone): each seed's result is its "
        "separate training's up to float rounding, and is not taken from or put in the "
        "results cache [default: on for CUDA, off on a CPU, where one thread per process "
        "measured it slower].",
        show_default=False,
    ),
) -> None:
    """Retrain the Pareto front (or --top K, --trial N; plus any --zoo KEY) with new seeds, at the
    search's fidelity or another one (search cheap, verify in full: --epochs, --lr, ...); report
    test accuracy mean ± std. Each seed's result is stored in the run as soon as it is known
    (with the fidelity it was trained at), so an interrupted verify continues where it stopped.
    """
    from budgetnas.search.cache.store import open_cache
    from budgetnas.search.study.runs import open_run
    from budgetnas.search.verification.records import failure_message
    from budgetnas.search.verification.retrain import verify_run
    from budgetnas.search.verification.seedlines import (
        verified_table,
        verify_failed_line,
        verify_line,
    )

    eager_steps(graphs)
    recipe = dict(epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum)
    recipe.update(weight_decay=weight_decay, augment=augment, label_smoothing=label_smoothing)
    with user_errors():
        results = verify_run(
            run,
            cache=open_cache(cache, enabled=not no_cache),
            trials=trial or None,
            top=top,
            zoo=zoo or None,
            seeds=seeds,
            device=device,
            precision=precision,
            fuse_seeds=fuse_seeds,
            data_dir=data_dir,
            train_subset=train_subset,
            on_result=lambda item, r: typer.echo(verify_line(item, r), err=True),
            on_failed=lambda item, f: typer.echo(verify_failed_line(item, f), err=True),
            **recipe,
        )
        write_reports(*open_run(run))
    for line in verified_table(results):
        typer.echo(line)
    failed = failure_message(results)
    if failed:  # the other results are stored and in the reports: one line, exit code 1
        typer.echo(f"error: {failed}", err=True)
        raise typer.Exit(1)
