"""``budgetnas bench``: training throughput, the seeds' DataLoader pipeline against
budgetnas's trainer, side by side in one run."""

from __future__ import annotations

from pathlib import Path

import typer

from budgetnas.search.cli.app import app, user_errors


@app.command()
def bench(
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N."),
    steps: int = typer.Option(60, help="Optimizer steps timed per pipeline and batch size."),
    nets: str = typer.Option("000,001", help="Zoo networks to time."),
    batches: str = typer.Option("128,512", help="Batch sizes."),
    concurrent: str = typer.Option(
        "", help="Also time N trainer processes at once on the device, e.g. 1,2,4 [default: none]."
    ),
    loader_workers: int = typer.Option(2, help="DataLoader workers of the seeds' pipeline."),
    data_dir: Path | None = typer.Option(None, help="MNIST root (default: $BUDGETNAS_DATA)."),
    at_once: str = typer.Option(
        "auto",
        help="K trainings at once in one process, e.g. 1,2,4 [auto: 1,2,4,8,16 on CUDA, "
        "2 on a CPU].",
    ),
    fused_seeds: int = typer.Option(3, help="N seeds of a net fused into one model (0: none)."),
    precision: str = typer.Option("fp32", help="auto, fp32 or bf16 (as search --precision)."),
    loader: bool = typer.Option(True, help="Also time the seeds' DataLoader pipeline."),
) -> None:
    """Epochs per second: the seeds' DataLoader pipeline vs budgetnas's trainer (the step
    eagerly, as a CUDA graph, K trainings at once, N seeds fused), side by side in one run
    (same net, batch, optimizer steps and augmentation)."""
    options = dict(locals())  # every option, as given
    from budgetnas.trainers.bench import bench_table

    with user_errors():
        bench_table(**options, echo=typer.echo)
