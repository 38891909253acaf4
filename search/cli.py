"""The ``budgetnas`` command line: parse, build a config, call one library function.

User mistakes (a bad budget, missing data, an unknown dataset, a run folder that is not there)
end as one line on stderr and exit code 1; Ctrl-C ends a search with its report written and
exit code 130.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import typer

from budgetnas.search.budget import parse_ladder
from budgetnas.search.errors import SearchError
from budgetnas.search.export import export_trial
from budgetnas.search.pruners import PRUNERS
from budgetnas.search.recipe import recipe_defaults
from budgetnas.search.reporting import write_run_reports
from budgetnas.search.run import SearchConfig, open_run, run_search, run_worker
from budgetnas.search.verify import Verified, verify_run
from budgetnas.space.count import analyze
from budgetnas.space.spec import ArchSpec, SpecError
from budgetnas.space.zoo import ZOO
from budgetnas.trainers.data import DATASETS, DataError, default_data_dir
from budgetnas.trainers.train import ConfigError

USER_ERRORS = (SearchError, SpecError, DataError, ConfigError)

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help=(
        "Find the most accurate small CNN under a hard parameter cap.\n\n"
        "search: sample and train candidates under --budget; report: (re)write the Pareto "
        "report of a run; export: write the best (or --trial N) network as a standalone "
        "module; zoo: the hand-made seed networks with exact counts."
    ),
)


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _write_reports(cfg: SearchConfig, study) -> None:
    files, counts = write_run_reports(cfg, study)
    typer.echo(
        f"trials: {counts['complete']} complete ({counts['duplicates']} reused), "
        f"{counts['pruned']} pruned, "
        f"{counts['rejected']} rejected before training ({counts['rejected_fraction']:.1%}), "
        f"{counts['failed']} failed",
        err=True,
    )
    typer.echo(f"wrote {files.html}, {files.trials_csv.name}, {files.pareto_csv.name}", err=True)


@app.command()
def search(
    budget: str | None = typer.Option(
        None,
        "--budget",
        "-b",
        help="Hard parameter cap: 10000, 10k, 12.5k, 1.2M; or a ladder 10k,13k,25k.",
    ),
    dataset: str = typer.Option("mnist", help=f"One of: {', '.join(DATASETS)}."),
    trials: int | None = typer.Option(
        None, help="Trials to run in total, a resumed run's included [default: 50]."
    ),
    timeout: float | None = typer.Option(
        None, help="Stop starting trials after this many seconds."
    ),
    epochs: int = typer.Option(15, help="Training epochs per candidate."),
    batch_size: int | None = typer.Option(
        None, help="Training batch size. Default: 128, or the one-epoch recipe's."
    ),
    lr: float | None = typer.Option(
        None, help="Peak learning rate (OneCycle). Default: 0.05, or the one-epoch recipe's."
    ),
    optimizer: str = typer.Option("sgd", help="sgd (momentum, Nesterov) or adamw."),
    label_smoothing: float = typer.Option(0.0, help="Label smoothing of the loss."),
    augment: float | None = typer.Option(
        None,
        help="Augmentation strength: 1 = rotation ±10°, shift ±10%, scale ±10% (on the device);"
        " 0 = none. Default: 1, or the one-epoch recipe's with --epochs 1.",
    ),
    seed: int = typer.Option(0, help="Seed of the sampler and of every training run."),
    device: str = typer.Option("auto", help="auto (CUDA when present), cpu, cuda, cuda:N."),
    train_subset: int | None = typer.Option(
        None, help="Train on a random subset of this many images (quick runs)."
    ),
    val_size: int = typer.Option(5000, help="Validation images carved from the training set."),
    data_dir: Path | None = typer.Option(
        None,
        help="Root folder of the data sets (default: $BUDGETNAS_DATA or ~/.cache/budgetnas/data).",
    ),
    download: bool = typer.Option(False, help="Download the data set when it is missing."),
    storage: str | None = typer.Option(
        None, help="Optuna storage URL (default: sqlite study.db in the run folder)."
    ),
    study: str = typer.Option("budgetnas", "--study", help="Study name inside the storage."),
    pruner: str = typer.Option(
        "banded",
        help=f"One of: {', '.join(PRUNERS)}. banded: median pruning among trials of similar size.",
    ),
    search_recipe: bool = typer.Option(
        False, help="Also search lr, label smoothing, dropout and augmentation strength."
    ),
    workers: int = typer.Option(
        1, help="Trial processes on this machine sharing the study (a journal file)."
    ),
    heartbeat: int = typer.Option(
        30, help="Seconds between liveness beats; a trial silent for 2x this is failed and retried."
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="Run folder to create."),
    resume: Path | None = typer.Option(
        None, help="Continue the search in this run folder (up to --trials in total)."
    ),
    quiet: bool = typer.Option(False, help="No progress lines."),
) -> None:
    """Search for the most accurate network under --budget; writes the study and reports."""
    try:
        if resume is not None:
            cfg, _ = open_run(resume)
            overrides: dict = {"trials": trials} if trials is not None else {}
            if timeout is not None:
                overrides["timeout"] = timeout
            if device != "auto":
                overrides["device"] = device
            cfg = replace(cfg, **overrides)
        else:
            if budget is None:
                raise SearchError("--budget is required (for example --budget 10k)")
            if out is None:
                raise SearchError("--out is required: the run folder to create")
            caps = parse_ladder(budget)
            recipe = recipe_defaults(epochs)
            cfg = SearchConfig(
                budget=caps[-1],
                ladder=caps if len(caps) > 1 else (),
                out=str(out),
                dataset=dataset,
                trials=50 if trials is None else trials,
                timeout=timeout,
                epochs=epochs,
                batch_size=recipe.batch_size if batch_size is None else batch_size,
                lr=recipe.lr if lr is None else lr,
                optimizer=optimizer,
                label_smoothing=label_smoothing,
                augment=recipe.augment if augment is None else augment,
                seed=seed,
                device=device,
                train_subset=train_subset,
                val_size=val_size,
                data_dir=str((data_dir or default_data_dir()).resolve()),
                download=download,
                storage=storage,
                study_name=study,
                pruner=pruner,
                search_recipe=search_recipe,
                heartbeat=heartbeat,
                workers=workers,
            )
            cfg.train_config()  # validate the training settings before any work
        result = run_search(cfg, resume=resume is not None, quiet=quiet)
    except USER_ERRORS as err:
        raise _fail(str(err)) from None
    except KeyboardInterrupt:
        typer.echo("\ninterrupted: finished trials are kept in the study", err=True)
        try:
            cfg, result = open_run(cfg.out)
            _write_reports(cfg, result)
        except Exception as err:  # the study may not exist yet
            typer.echo(f"(no report written: {err})", err=True)
        typer.echo(f"continue with: budgetnas search --resume {cfg.out}", err=True)
        raise typer.Exit(130) from None
    _write_reports(cfg, result)


@app.command()
def worker(
    storage: str = typer.Option(..., help="The shared study's storage, e.g. postgresql://..."),
    study: str = typer.Option("budgetnas", "--study", help="Study name inside the storage."),
    out: Path = typer.Option(..., "--out", "-o", help="Local folder for this worker's weights."),
    device: str | None = typer.Option(None, help="Device here (default: the study's)."),
    data_dir: Path | None = typer.Option(None, help="Data root on this machine."),
    quiet: bool = typer.Option(False, help="No progress lines."),
) -> None:
    """Join a search started elsewhere (shared RDB storage) and train its candidates here."""
    try:
        run_worker(
            storage,
            study,
            out=out,
            device=device,
            data_dir=str(data_dir.resolve()) if data_dir else None,
            quiet=quiet,
        )
    except USER_ERRORS as err:
        raise _fail(str(err)) from None
    except KeyboardInterrupt:
        typer.echo("\ninterrupted: finished trials are kept in the study", err=True)
        raise typer.Exit(130) from None


@app.command()
def report(
    run: Path = typer.Argument(..., help="A run folder made by `budgetnas search`."),
) -> None:
    """(Re)write report.html, trials.csv and pareto.csv of a run from its study."""
    try:
        cfg, study = open_run(run)
        _write_reports(cfg, study)
    except USER_ERRORS as err:
        raise _fail(str(err)) from None


@app.command()
def export(
    run: Path = typer.Argument(..., help="A run folder made by `budgetnas search`."),
    out: Path = typer.Option(..., "--out", "-o", help="The .py module to write (weights: .pt)."),
    trial: int | None = typer.Option(None, help="Export this trial instead of the best."),
    force: bool = typer.Option(False, help="Overwrite existing files."),
    data_dir: Path | None = typer.Option(None, help="Data root for the test set."),
    device: str = typer.Option("cpu", help="Device for the test evaluation."),
) -> None:
    """Write a trained network as a standalone module + weights; print its test accuracy."""
    try:
        res = export_trial(run, out=out, trial=trial, force=force, data_dir=data_dir, device=device)
    except USER_ERRORS as err:
        raise _fail(str(err)) from None
    typer.echo(
        f"trial {res.trial}: {res.params:,} parameters, validation accuracy {res.val_acc:.2%}, "
        f"test accuracy {res.test_acc:.2%}"
    )
    typer.echo(f"wrote {res.module} and {res.weights}")


@app.command()
def verify(
    run: Path = typer.Argument(..., help="A run folder made by `budgetnas search`."),
    trial: list[int] | None = typer.Option(None, help="Verify this trial (repeatable)."),
    top: int | None = typer.Option(None, help="Verify the K best trials by validation."),
    zoo: list[str] | None = typer.Option(
        None, help="Verify a seed network from the zoo with the run's recipe (repeatable)."
    ),
    seeds: int = typer.Option(3, help="Seeds 0..N-1 per architecture."),
    epochs: int | None = typer.Option(None, help="Epochs (default: the run's)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N."),
    data_dir: Path | None = typer.Option(None, help="Data root (default: the run's)."),
    train_subset: int | None = typer.Option(
        None, help="Train on a subset (quick checks only; default: the full training split)."
    ),
) -> None:
    """Retrain the Pareto front (or --top K, --trial N, --zoo KEY) with several seeds; report
    test accuracy mean ± std. Results are stored in the run and shown in its report."""

    def show(item: Verified, r) -> None:
        typer.echo(
            f"{item.key:<12} {item.params:>7,}  seed {r.seed}  val {r.val_acc:.2%}  "
            f"test {r.test_acc:.2%}  ({r.train_time_s:.0f} s on {r.device})",
            err=True,
        )

    try:
        results = verify_run(
            run,
            trials=trial or None,
            top=top,
            zoo=zoo or None,
            seeds=seeds,
            epochs=epochs,
            device=device,
            data_dir=data_dir,
            train_subset=train_subset,
            on_result=show,
        )
        cfg, study = open_run(run)
        _write_reports(cfg, study)
    except USER_ERRORS as err:
        raise _fail(str(err)) from None
    typer.echo(
        f"{'network':<12} {'params':>7}  {'val mean':>8}  {'test mean ± std':>17}  {'min':>6}"
    )
    for v in results:
        typer.echo(
            f"{v.key:<12} {v.params:>7,}  {v.val_mean:>8.2%}  "
            f"{v.test_mean:>8.2%} ± {v.test_std:>6.2%}  {v.test_min:>6.2%}"
        )


@app.command()
def bench(
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N."),
    steps: int = typer.Option(60, help="Optimizer steps timed per pipeline and batch size."),
    nets: str = typer.Option("000,001", help="Zoo networks to time."),
    batches: str = typer.Option("128,512", help="Batch sizes."),
    concurrent: str = typer.Option(
        "", help="Also time N trainer processes at once on the device, e.g. 1,2,4."
    ),
    loader_workers: int = typer.Option(2, help="DataLoader workers of the seeds' pipeline."),
    data_dir: Path | None = typer.Option(None, help="MNIST root (default: $BUDGETNAS_DATA)."),
) -> None:
    """Epochs per second: the seeds' DataLoader pipeline vs budgetnas's trainer, side by side
    in one run (same net, batch, optimizer steps and augmentation)."""
    from budgetnas.trainers.bench import run_bench, run_concurrent
    from budgetnas.trainers.train import device_name, resolve_device

    try:
        dev = resolve_device(device)
        root = str((data_dir or default_data_dir()).resolve())
        net_keys = tuple(k.strip() for k in nets.split(","))
        unknown = [k for k in net_keys if k not in ZOO]
        if unknown:
            raise SearchError(f"no zoo entry {unknown[0]!r}; entries: {', '.join(ZOO)}")
        sizes = tuple(int(b) for b in batches.split(","))
        typer.echo(
            f"device: {device_name(dev)}, torch {__import__('torch').__version__}, "
            f"{steps} steps per measurement",
            err=True,
        )
        typer.echo(
            f"{'net':<4} {'batch':>5} {'DataLoader ep/s':>15} {'budgetnas ep/s':>14} {'ratio':>6}"
        )

        def show(loader, ours) -> None:
            typer.echo(
                f"{ours.net:<4} {ours.batch:>5} {loader.epochs_per_s:>15.3f} "
                f"{ours.epochs_per_s:>14.3f} {ours.epochs_per_s / loader.epochs_per_s:>5.2f}x"
            )

        run_bench(
            data_dir=root,
            device=dev,
            nets=net_keys,
            batches=sizes,
            steps=steps,
            loader_workers=loader_workers,
            progress=show,
        )
        for n in (int(c) for c in concurrent.split(",") if c.strip()):
            rate = run_concurrent(
                data_dir=root,
                device=str(dev),
                processes=n,
                net=net_keys[-1],
                batch=sizes[-1],
                steps=steps,
            )
            typer.echo(
                f"{n} concurrent trainer process(es), net {net_keys[-1]}, batch "
                f"{sizes[-1]}: {rate:.3f} epochs/s in total"
            )
    except (ValueError, *USER_ERRORS) as err:
        raise _fail(str(err)) from None


@app.command()
def count(
    spec_file: Path = typer.Argument(..., help="A spec as JSON (see `budgetnas zoo --spec 001`)."),
) -> None:
    """Exact parameters, MACs, shapes and receptive field of a hand-written spec, per block."""
    try:
        if not spec_file.is_file():
            raise SearchError(f"spec file {spec_file} does not exist")
        spec = ArchSpec.from_json(spec_file.read_text(encoding="utf-8", errors="replace"))
    except USER_ERRORS as err:
        raise _fail(str(err)) from None
    stats = analyze(spec)
    typer.echo(f"{'#':>3}  {'block':<34} {'out (C,H,W)':>14} {'params':>8} {'MACs':>11} {'RF':>3}")
    for layer in stats.layers:
        idx = str(layer.index) if layer.index else "head"
        shape = ",".join(map(str, layer.out_shape))
        typer.echo(
            f"{idx:>3}  {layer.name[:34]:<34} {shape:>14} {layer.params:>8,} {layer.macs:>11,} "
            f"{layer.receptive_field:>3}"
        )
    typer.echo(
        f"total: {stats.params:,} parameters, {stats.macs:,} MACs, receptive field "
        f"{stats.receptive_field}"
    )


@app.command()
def zoo(
    spec: str | None = typer.Option(None, help="Print this entry's spec as JSON (e.g. 001)."),
) -> None:
    """The hand-made seed networks as specs, with exact parameter counts."""
    if spec is not None:
        if spec not in ZOO:
            raise _fail(f"no zoo entry {spec!r}; entries: {', '.join(ZOO)}")
        typer.echo(ZOO[spec].spec.to_json(indent=2))
        return
    typer.echo(
        f"{'key':<4} {'params':>7} {'published':>9} {'MACs':>10} {'RF':>3} {'claimed':>8}  title"
    )
    for e in ZOO.values():
        a = analyze(e.spec)
        published = f"{e.published_params:,}" if e.published_params else "-"
        typer.echo(
            f"{e.key:<4} {a.params:>7,} {published:>9} {a.macs:>10,} {a.receptive_field:>3} "
            f"{e.claimed_accuracy:>8.2%}  {e.title} ({e.claim})"
        )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
