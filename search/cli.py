"""The ``budgetnas`` command line: parse, build a config, call one library function.

User mistakes (a bad budget, missing data, an unknown dataset, a run folder that is not there,
settings that do not match a study) end as one line on stderr and exit code 1, all mapped in
``_user_errors``; Ctrl-C ends a search with its report written and exit code 130. Options
that are not given are ``None`` here and take the library's defaults.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from budgetnas.search.budget import parse_count, parse_duration, parse_ladder
from budgetnas.search.config import (
    DEFAULT_RUNGS,
    MAX_CPU_WORKERS,
    RESUMABLE,
    SearchConfig,
    flag,
    new_config,
)
from budgetnas.search.errors import SearchError, SearchStopped, VerifyFailed
from budgetnas.search.pruners import PRUNERS
from budgetnas.search.samplers import SAMPLERS
from budgetnas.search.sizing import SIZINGS
from budgetnas.space.spec import SpecError
from budgetnas.trainers.data import DATASETS, DataConfig, DataError
from budgetnas.trainers.recipe import ONE_EPOCH_DEFAULTS, ConfigError, TrainConfig
from budgetnas.trainers.sources import TORCHVISION_OTHERS

USER_ERRORS = (SearchError, SpecError, DataError, ConfigError)

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,  # help texts are plain: "[default: 15]" must not be read as markup
    pretty_exceptions_enable=False,
    help=(
        "Find the most accurate small CNN under a hard parameter cap.\n\n"
        "search: sample and train candidates under --budget (MNIST-like data or your own "
        "images, --data), ending with the front verified at the target fidelity; report: "
        "(re)write the report of a run; export: write the best verified searched network (or "
        "--trial N) as a standalone module or ONNX; verify: retrain chosen networks with new "
        "seeds; space: print or check a search space file; count: exact costs of a spec; "
        "zoo: the hand-made seed networks; cache: see or trim the results cache."
    ),
)


@contextmanager
def _user_errors() -> Iterator[None]:
    """The one place where a library error becomes ``error: ...`` and exit code 1."""
    try:
        yield
    except USER_ERRORS as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None


def _write_reports(cfg: SearchConfig, study) -> None:
    from budgetnas.reports.compute import compute_line
    from budgetnas.reports.html import counts_text
    from budgetnas.reports.sizes import sizes_line
    from budgetnas.search.racing import race_lines
    from budgetnas.search.reporting import sizes_table, spent_table, write_run_reports

    files, counts = write_run_reports(cfg, study)
    typer.echo(counts_text(counts, rungs=cfg.rungs), err=True)
    typer.echo(sizes_line(sizes_table(cfg, study)), err=True)
    typer.echo(compute_line(spent_table(study)), err=True)
    typer.echo(f"wrote {files.html}, {files.trials_csv.name}, {files.pareto_csv.name}", err=True)
    for line in race_lines(cfg, study):  # the answer and the verdict: the last word
        typer.echo(line, err=True)


_ONE = ONE_EPOCH_DEFAULTS


def _opt(help: str, *names: str) -> Any:
    """An option that stays ``None`` unless given, so the library's default applies."""
    return typer.Option(None, *names, help=help)


_CACHE_HELP = (
    "Results cache shared by every search on this machine: a finished training (a reference "
    "network, a verify seed, a candidate met again) and its weights, keyed by everything that "
    "determines it, is reused instead of trained again [default: $BUDGETNAS_CACHE, else "
    "$XDG_CACHE_HOME/budgetnas/results or ~/.cache/budgetnas/results]."
)
_NO_CACHE_HELP = "Train everything; read and write no results cache [default: the cache is used]."


@app.command()
def search(
    budget: str | None = _opt(
        "Hard parameter cap: 10000, 10k, 12.5k, 1.2M; or a ladder 10k,13k,25k (required for a "
        "new search).",
        "--budget",
        "-b",
    ),
    max_macs: str | None = _opt(
        "Cap on multiply-accumulates per image, e.g. 2M or 500k [default: none]."
    ),
    max_activation_kb: float | None = _opt(
        "Cap on peak activation memory in KB (1 KB = 1,024 bytes) at int8, one byte per "
        "element, as a runtime runs the network: layer by layer, conv+BN+ReLU fused (see "
        "`budgetnas count`) [default: none]."
    ),
    out: Path | None = _opt("Run folder to create (required for a new search).", "--out", "-o"),
    resume: Path | None = _opt(
        "Continue the search in this run folder with its stored settings (up to --trials in "
        f"total). Only {', '.join(map(flag, RESUMABLE))} may be given "
        "[default: none, a new search]."
    ),
    trials: int | None = _opt(
        "Candidates to sample and finish (complete or pruned) at the first rung, a resumed "
        "run's included; their promotions to higher rungs come on top "
        f"[default: {SearchConfig.trials}]."
    ),
    timeout: float | None = _opt(
        "Stop starting trials after this many seconds [default: none, --trials decides]."
    ),
    budget_time: str | None = _opt(
        "Compute budget in wall time, e.g. 30m or 2h: new candidates are sampled while the work "
        "they commit to (their promotions and the final verification, timed on the trials so "
        "far) fits; --trials is then an upper bound [default: none, --trials decides]."
    ),
    budget_epochs: float | None = _opt(
        "Compute budget counted, not timed, in trainings at the target fidelity (the recipe's "
        "epochs on the training split): e.g. 30 = the image-epochs of 30 full trainings, for "
        "every rung, promotion, reference network and the final verification together; new "
        "candidates are sampled while the planned work fits, so the last ones may end a little "
        "past it; --trials is then an upper bound [default: none]."
    ),
    rungs: int | None = _opt(
        "Fidelity rungs: candidates are sampled at the cheapest, the best of each size band "
        "promoted rung by rung (each --eta times the one below in epochs x images) up to the "
        "target, the recipe's --epochs on the training split; 1: every candidate at the "
        f"target [default: {DEFAULT_RUNGS}; fewer where the target leaves no room below it, 1 "
        "with --pruner median or hyperband]."
    ),
    eta: int | None = _opt(
        f"Cost ratio between rungs; the top 1/eta of a rung move up [default: {SearchConfig.eta}]."
    ),
    verify_seeds: int | None = _opt(
        "At the end the front at the target (at most 5 networks), the candidates whose "
        "reading is within reach of the best under a cap and the seed networks race on new "
        "seeds: 2 each to start with, more while one is level with the leader under a cap "
        "(up to --race-seeds); the answer under each cap (the best mean validation; export "
        "ships it) and the strongest seed network under it end with at least this many, "
        f"for the verdict; 0: skip [default: {SearchConfig.verify_seeds}]."
    ),
    race_seeds: int | None = _opt(
        "The most new seeds a network gets in the race at the end "
        f"[default: {SearchConfig.race_seeds}]."
    ),
    epochs: int | None = _opt(f"Training epochs per candidate [default: {TrainConfig.epochs}]."),
    batch_size: int | None = _opt(
        f"Training batch size [default: {TrainConfig.batch_size}; {_ONE['batch_size']} with "
        "--epochs 1]."
    ),
    lr: float | None = _opt(
        f"Peak learning rate (OneCycle) [default: {TrainConfig.lr}; {_ONE['lr']} with --epochs 1]."
    ),
    optimizer: str | None = _opt(f"sgd or adamw [default: {TrainConfig.optimizer}]."),
    momentum: float | None = _opt(
        f"SGD's Nesterov momentum, constant over the run (OneCycle cycles the learning rate "
        f"only; adamw ignores it) [default: {TrainConfig.momentum}]."
    ),
    weight_decay: float | None = _opt(
        f"Weight decay: SGD's L2 penalty, AdamW's decoupled decay "
        f"[default: {TrainConfig.weight_decay}]."
    ),
    label_smoothing: float | None = _opt(
        f"Label smoothing of the loss [default: {TrainConfig.label_smoothing}]."
    ),
    augment: float | None = _opt(
        "Augmentation strength: 1 = rotation ±10°, shift ±10%, scale ±10% (on the device); "
        "0 = none [default: 1; 0 with --epochs 1]."
    ),
    seed: int | None = _opt(
        "Seed of the sampler and of every training run. With one trial process (--workers 1) "
        "the same command and seed sample the same specs and, on a CPU, reach the same "
        "accuracies. With several, each process's sampler is seeded from --seed and the "
        "process's index, but the processes finish trials in an order that depends on timing, "
        "and each proposes from what has finished, so the set of specs sampled may differ "
        f"[default: {SearchConfig.seed}]."
    ),
    device: str | None = _opt("auto (CUDA when present), cpu, cuda, cuda:N [default: auto]."),
    precision: str | None = _opt(
        "fp32, or bf16 (the forward pass under bf16 autocast; weights and updates in fp32; in "
        "channels_last order on a CPU). auto: bf16 on a CPU that computes bf16 in hardware "
        "(AVX512-BF16 or AMX: 1.5x a training step there, the same accuracy), fp32 elsewhere "
        "[default: auto]."
    ),
    dataset: str | None = _opt(
        f"One of: {', '.join([*DATASETS, *TORCHVISION_OTHERS])} (the last three read from "
        f"--data-dir when on disk) [default: {DataConfig.dataset}]."
    ),
    data: Path | None = _opt(
        "Your own images instead: a folder with one sub-folder per class (DATA/cat/001.png; "
        "or DATA/train/... and DATA/test/...), or an .npz with x (uint8, N x H x W [x C]) and "
        "y, optionally x_test and y_test. Channels, size, classes and normalisation come from "
        "the data; without a test part, a seeded 10% is held out as the test set "
        "[default: none, --dataset].",
        "--data",
    ),
    resize: int | None = _opt(
        "Scale every image to N x N pixels, bilinear (for images of mixed or non-square "
        "sizes, or a smaller network input) [default: none, the images' own size]."
    ),
    data_dir: Path | None = _opt(
        "Root folder of the data sets [default: $BUDGETNAS_DATA or ~/.cache/budgetnas/data]."
    ),
    download: bool | None = _opt(
        "Download the data set when missing [default: no-download].", "--download/--no-download"
    ),
    train_subset: int | None = _opt(
        "Train on a random subset of this many images (quick runs) [default: the whole "
        "training split]."
    ),
    val_size: int | None = _opt(
        "Validation images carved from the training set [default: 5000 for the MNIST "
        "family, else 10% of the training images, at most 5000]."
    ),
    split_seed: int | None = _opt(
        f"Seed of the train/validation split [default: {DataConfig.split_seed}]."
    ),
    sampler: str | None = _opt(
        f"One of: {', '.join(SAMPLERS)}. motpe, nsga2: accuracy and parameters as two objectives "
        f"(the front); tpe: accuracy alone; random: a baseline [default: {SearchConfig.sampler}]."
    ),
    sizing: str | None = _opt(
        f"One of: {', '.join(SIZINGS)}. spread: each candidate's size is assigned, spread over "
        "log(parameters) from the space's smallest target to the cap, half of them within 1.5x "
        "of the cap; sampler: the sampler chooses sizes too (a multi-objective one drifts to "
        f"small networks) [default: {SearchConfig.sizing}]."
    ),
    pruner: str | None = _opt(
        f"One of: {', '.join(PRUNERS)}. banded: median pruning among trials of similar size "
        f"[default: {SearchConfig.pruner}]."
    ),
    references: str | None = _opt(
        "Seed networks trained in the study with its recipe, data and seeds, as yardsticks: "
        "all, none, or zoo keys such as 001,004 (those under a cap) [default: all]."
    ),
    space: str | None = _opt(
        "The search space: a space file (TOML; budgetnas space --show prints the default, to "
        "copy and edit) or a shipped one by name: default, rich (adds depthwise-separable and "
        "inverted-residual layers, 5x5 kernels, squeeze-excitation, strided transitions) "
        "[default: default].",
        "--space",
    ),
    search_recipe: bool | None = _opt(
        "Also search lr, label smoothing, dropout and augmentation strength "
        "[default: no-search-recipe].",
        "--search-recipe/--no-search-recipe",
    ),
    teacher: str | None = _opt(
        "Distil from a teacher: auto (a network of 102,826 parameters trained once on the "
        "training split with the run's recipe, at least 5 epochs, kept in the results cache), "
        "or a module written by budgetnas export (its .py, with the .pt beside it); every "
        "training of the search then learns from its soft targets too. none: no teacher "
        "[default: none]."
    ),
    distill: float | None = _opt(
        "With --teacher: the weight of the teacher's soft targets in the loss, in (0, 1] "
        "(temperature 4) [default: 0.5]."
    ),
    workers: int | None = _opt(
        "Trial processes on this machine sharing the study [default: one per core on a CPU "
        f"(at most {MAX_CPU_WORKERS}, the cores shared among them); 1 on a GPU]."
    ),
    storage: str | None = _opt("Optuna storage URL [default: a study file in the run folder]."),
    study_name: str | None = _opt(
        f"Study name inside the storage [default: {SearchConfig.study_name}].", "--study"
    ),
    heartbeat: int | None = _opt(
        "Seconds between liveness beats; a trial silent for 2x this is failed and retried "
        f"[default: {SearchConfig.heartbeat}]."
    ),
    cache: Path | None = typer.Option(None, "--cache", help=_CACHE_HELP),
    no_cache: bool = typer.Option(False, "--no-cache", help=_NO_CACHE_HELP),
    quiet: bool = typer.Option(False, help="No progress lines."),
) -> None:
    """Search for the most accurate network under --budget; writes the study and reports.

    The search runs until --trials candidates have been trained (completed or pruned) at the
    first rung and the promotions they earned up to the target; a failed trial, a candidate
    over a cap (rejected before training) and the reference networks do not count. 5
    failures in a row, or 200 rejections in a row, stop the search with one line.
    """
    given = {  # the search's settings (resume, quiet and the cache are none)
        k: v
        for k, v in locals().items()
        if v is not None and k not in ("resume", "quiet", "cache", "no_cache")
    }
    if "data" in given:
        given["path"] = given.pop("data")
    if "space" in given:
        given["space_file"] = given.pop("space")
    cfg: SearchConfig | None = None
    with _user_errors():
        if budget_time is not None:
            given["budget_time"] = parse_duration(budget_time)
        if resume is not None:
            from budgetnas.search.runs import read_config

            cfg = read_config(resume).resumed(**given)
        else:
            if budget is None:
                raise SearchError("--budget is required (for example --budget 10k)")
            if out is None:
                raise SearchError("--out is required: the run folder to create")
            del given["budget"], given["out"]
            if max_macs is not None:
                given["max_macs"] = parse_count(max_macs, what="--max-macs", unit="MAC")
            cfg = new_config(out=out, caps=parse_ladder(budget), **given)
        from budgetnas.search.cache import open_cache
        from budgetnas.search.driver import run_search

        results = open_cache(cache, enabled=not no_cache)
        try:
            result = run_search(cfg, resume=resume is not None, quiet=quiet, cache=results)
        except KeyboardInterrupt:
            _interrupted(cfg)
            raise typer.Exit(130) from None
        except VerifyFailed:  # the search is done: its reports, then the line on the seeds
            from budgetnas.search.runs import open_run

            _write_reports(*open_run(cfg.out))
            _trim_weights(*open_run(cfg.out))
            raise
        except SearchStopped:  # what finished is reported (quietly) beside the one-line error
            from budgetnas.search.reporting import write_run_reports
            from budgetnas.search.runs import open_run

            write_run_reports(*open_run(cfg.out))
            raise
        _write_reports(cfg, result)
        _trim_weights(cfg, result)


def _trim_weights(cfg: SearchConfig, study) -> None:
    """The end of a search: drop the weights no one can be handed any more
    (``search.run_weights``), and say what is kept."""
    from budgetnas.search.run_weights import trim_weights, weights_line

    typer.echo(weights_line(trim_weights(cfg, study)), err=True)


def _interrupted(cfg: SearchConfig) -> None:
    from budgetnas.search.runs import open_run

    typer.echo("\ninterrupted: finished trials are kept in the study", err=True)
    try:
        _write_reports(*open_run(cfg.out))
    except Exception as err:  # the study may not exist yet
        typer.echo(f"(no report written: {err})", err=True)
    typer.echo(f"continue with: budgetnas search --resume {cfg.out}", err=True)


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
    cache: Path | None = typer.Option(None, "--cache", help=_CACHE_HELP),
    no_cache: bool = typer.Option(False, "--no-cache", help=_NO_CACHE_HELP),
    quiet: bool = typer.Option(False, help="No progress lines."),
    # a helper process of `search --workers N` (search.processes): its index, which seeds its
    # sampler with the trials the study held at the start; it ends with the search
    helper_index: int | None = typer.Option(None, hidden=True),
    helper_trials_before: int = typer.Option(0, hidden=True),
) -> None:
    """Join a search started elsewhere (shared storage) and train its candidates here."""
    try:
        if helper_index is not None:
            from budgetnas.search import processes

            processes.watch_parent()
        from budgetnas.search import driver
        from budgetnas.search.cache import open_cache

        with _user_errors():
            driver.run_worker(
                storage,
                study,
                out=out,
                device=device,
                data_dir=str(data_dir.resolve()) if data_dir else None,
                quiet=quiet,
                cache=open_cache(cache, enabled=not no_cache),
                helper_index=helper_index,
                trials_before=helper_trials_before,
            )
    except KeyboardInterrupt:  # a helper is stopped by its search, which says so
        if helper_index is None:
            typer.echo("\ninterrupted: finished trials are kept in the study", err=True)
        raise typer.Exit(130) from None


@app.command()
def report(
    run: Path = typer.Argument(..., help="A run folder made by `budgetnas search`."),
) -> None:
    """(Re)write report.html, trials.csv and pareto.csv of a run from its study."""
    from budgetnas.search.runs import open_run

    with _user_errors():
        _write_reports(*open_run(run))


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
    from budgetnas.search.export import export_trial

    with _user_errors():
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
    w = res.shipped
    typer.echo(f"{res.label}: {res.params:,} parameters; chosen: {res.why}")
    if res.refit_images:
        typer.echo(
            f"weights: refit on {res.refit_images:,} training + validation images as "
            f"{res.weights_name} was trained ({w.fidelity}): the same {w.train_images:,} "
            f"training images and the {res.refit_images - w.train_images:,} validation images; "
            f"validation accuracy {w.val_acc:.2%} before the refit, none after: its images were "
            f"trained on; test accuracy {res.test_acc:.2%}"
        )
    else:
        typer.echo(
            f"weights: {res.weights_name} ({w.fidelity}): validation accuracy "
            f"{res.val_acc:.2%}, test accuracy {res.test_acc:.2%}"
        )
    if res.note:
        typer.echo(f"note: {res.note}")
    if res.verdict:
        typer.echo(f"verdict: {res.verdict}")
    if res.onnx is None:
        typer.echo(f"wrote {res.module} and {res.weights}")
        return
    r = res.onnx
    typer.echo(
        f"onnx: {r.path} ({r.size_bytes / 1024:.1f} KB); max |onnxruntime - torch| over the "
        f"test set {r.max_abs_diff:.2e}; test accuracy torch {r.torch_acc:.2%}, onnxruntime "
        f"{r.onnx_acc:.2%}"
    )
    if r.int8_path is not None:
        typer.echo(
            f"int8: {r.int8_path} ({r.int8_size_bytes / 1024:.1f} KB); test accuracy int8 "
            f"{r.int8_acc:.2%}, float {r.onnx_acc:.2%}"
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
    epochs: int | None = _opt("Epochs [default: the searched recipe's]."),
    batch_size: int | None = _opt("Batch size [default: the searched recipe's]."),
    lr: float | None = _opt("Peak learning rate [default: the searched recipe's]."),
    momentum: float | None = _opt("SGD momentum [default: the searched recipe's]."),
    weight_decay: float | None = _opt("Weight decay [default: the searched recipe's]."),
    augment: float | None = _opt("Augmentation strength [default: the searched recipe's]."),
    label_smoothing: float | None = _opt("Label smoothing [default: the searched recipe's]."),
    train_subset: int | None = _opt(
        "Train on a subset (quick checks only) [default: the full training split]."
    ),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N."),
    precision: str | None = _opt(
        "fp32, bf16, or auto (bf16 on a CPU that computes bf16 in hardware, fp32 elsewhere), "
        "as for search; recorded with each result, so two precisions are never one mean "
        "[default: the run's]."
    ),
    data_dir: Path | None = typer.Option(None, help="Data root [default: the run's]."),
    cache: Path | None = typer.Option(None, "--cache", help=_CACHE_HELP),
    no_cache: bool = typer.Option(False, "--no-cache", help=_NO_CACHE_HELP),
) -> None:
    """Retrain the Pareto front (or --top K, --trial N; plus any --zoo KEY) with new seeds, at the
    search's fidelity or another one (search cheap, verify in full: --epochs, --lr, ...); report
    test accuracy mean ± std. Each seed's result is stored in the run as soon as it is known
    (with the fidelity it was trained at), so an interrupted verify continues where it stopped.
    """
    from budgetnas.search.runs import open_run
    from budgetnas.search.verified import Verified, failure_message, mean_spread
    from budgetnas.search.verify import verify_run

    def show(item: Verified, r) -> None:
        typer.echo(
            f"{item.label:<12} {item.params:>7,}  seed {r.seed}  val {r.val_acc:.2%}  "
            f"test {r.test_acc:.2%}  ({r.train_time_s:.0f} s on {r.device}; "
            f"{item.fidelity_label})" + ("  reused from cache" if r.cached else ""),
            err=True,
        )

    def show_failed(item: Verified, f) -> None:
        when = "failed" if f.seed in item.failed_now else "failed earlier"
        typer.echo(
            f"{item.label:<12} {item.params:>7,}  seed {f.seed}  {when}: {f.error}  "
            f"({f.device}; {item.fidelity_label})",
            err=True,
        )

    recipe = {
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "momentum": momentum,
        "weight_decay": weight_decay,
        "augment": augment,
        "label_smoothing": label_smoothing,
    }
    with _user_errors():
        from budgetnas.search.cache import open_cache

        results = verify_run(
            run,
            cache=open_cache(cache, enabled=not no_cache),
            trials=trial or None,
            top=top,
            zoo=zoo or None,
            seeds=seeds,
            device=device,
            precision=precision,
            data_dir=data_dir,
            train_subset=train_subset,
            on_result=show,
            on_failed=show_failed,
            **recipe,
        )
        _write_reports(*open_run(run))
    typer.echo(
        f"{'network':<12} {'params':>7}  {'val mean':>8}  {'test mean ± std':>17}  {'min':>6}"
        "  fidelity"
    )
    for v in results:
        ok = bool(v.runs)
        typer.echo(
            f"{v.label:<12} {v.params:>7,}  {f'{v.val_mean:.2%}' if ok else '-':>8}  "
            f"{mean_spread([r.test_acc for r in v.runs]):>17}  "
            f"{f'{v.test_min:.2%}' if ok else '-':>6}  {v.fidelity_label}"
            + (f"  {v.failed_label}" if v.failed else "")
        )
    failed = failure_message(results)
    if failed:  # the other results are stored and in the reports: one line, exit code 1
        typer.echo(f"error: {failed}", err=True)
        raise typer.Exit(1)


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
    older_than: str | None = _opt(
        "With --prune: remove the entries not written or reused for this long: 30d, 12h, 90m, "
        "2w [default: none]."
    ),
    max_size: str | None = _opt(
        "With --prune: remove the oldest entries until the cache holds at most this much: "
        "500M, 2G, 200k (units of 1,024 bytes) [default: none]."
    ),
) -> None:
    """The results cache: its folder, entries and size by age; --prune trims it. Removing
    entries is always safe: a training whose entry is gone is trained again when needed."""
    from budgetnas.search.cache import CACHE_ENV, open_cache
    from budgetnas.search.cache_admin import format_size, listing, parse_age, parse_size, scan
    from budgetnas.search.cache_admin import prune as prune_cache

    with _user_errors():
        if not prune and (older_than is not None or max_size is not None):
            raise SearchError("--older-than and --max-size go with --prune")
        age = parse_age(older_than) if older_than is not None else None
        size = parse_size(max_size) if max_size is not None else None
        if prune and age is None and size is None:
            raise SearchError(
                "--prune needs --older-than AGE or --max-size SIZE (e.g. --older-than 30d)"
            )
        found = open_cache(cache)
        off = f"the results cache is off (${CACHE_ENV}=off); --cache DIR names a folder"
        if found is None and prune:
            raise SearchError(off + ": nothing to prune")
    if found is None:
        typer.echo(off)
        return
    if not prune:
        for line in listing(scan(found.root)):
            typer.echo(line)
        return
    done = prune_cache(found.root, older_than=age, max_size=size)
    n, left = done.entries, done.left
    typer.echo(
        f"pruned {found.root}: removed {n} entr{'y' if n == 1 else 'ies'} "
        f"({format_size(done.entry_bytes)})"
        + (
            f" and {done.stale} unfinished write{'s' * (done.stale > 1)} "
            f"({format_size(done.stale_bytes)})"
            if done.stale
            else ""
        )
        + f"; left: {len(left.entries)} entr{'y' if len(left.entries) == 1 else 'ies'}, "
        f"{format_size(left.size)}"
    )


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

    with _user_errors():
        bench_table(**options, echo=typer.echo)


@app.command()
def count(
    spec_file: Path = typer.Argument(..., help="A spec as JSON (see `budgetnas zoo --spec 001`)."),
) -> None:
    """Exact parameters, MACs, shapes and receptive field of a hand-written spec, per block."""
    from budgetnas.space.count import analyze
    from budgetnas.space.memory import FLOAT32, INT8, activation_memory
    from budgetnas.space.spec import ArchSpec

    with _user_errors():
        if not spec_file.is_file():
            raise SearchError(f"spec file {spec_file} does not exist")
        spec = ArchSpec.from_json(spec_file.read_text(encoding="utf-8", errors="replace"))
    stats, memory = analyze(spec), activation_memory(spec)
    typer.echo(
        f"{'#':>3}  {'block':<34} {'out (C,H,W)':>14} {'params':>8} {'MACs':>11} {'RF':>3} "
        f"{'act f32':>9} {'act int8':>9}"
    )
    for layer, peak in zip(stats.layers, memory.blocks, strict=True):
        idx = str(layer.index) if layer.index else "head"
        shape = ",".join(map(str, layer.out_shape))
        typer.echo(
            f"{idx:>3}  {layer.name[:34]:<34} {shape:>14} {layer.params:>8,} {layer.macs:>11,} "
            f"{layer.receptive_field:>3} {_kb(4 * peak):>9} "
            f"{_kb(peak):>9}"
        )
    typer.echo(
        f"total: {stats.params:,} parameters, {stats.macs:,} MACs, receptive field "
        f"{stats.receptive_field}, peak activation {memory.bytes(FLOAT32):,} bytes float32 / "
        f"{memory.bytes(INT8):,} bytes int8 (plain layer-by-layer order)"
    )


def _kb(n: int) -> str:
    return f"{n / 1024:.1f} KB"


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

    with _user_errors():
        if file is None:
            if not show:
                raise SearchError("give a space file to check, or --show to print the default")
            typer.echo(shipped_text("rich" if rich else "default"), nl=False)
            return
        settings = read(file)
        cfg = space_config(settings, {}, name=f"space file {file}")
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
    from budgetnas.space.count import analyze
    from budgetnas.space.memory import activation_memory
    from budgetnas.space.zoo import ZOO

    with _user_errors():
        if spec is not None and spec not in ZOO:
            raise SearchError(f"no zoo entry {spec!r}; entries: {', '.join(ZOO)}")
    if spec is not None:
        typer.echo(ZOO[spec].spec.to_json(indent=2))
        return
    typer.echo(
        f"{'key':<4} {'params':>7} {'published':>9} {'MACs':>10} {'RF':>3} {'act f32':>9} "
        f"{'act int8':>9} {'claimed':>8}  title"
    )
    for e in ZOO.values():
        a, peak = analyze(e.spec), activation_memory(e.spec).peak
        published = f"{e.published_params:,}" if e.published_params else "-"
        typer.echo(
            f"{e.key:<4} {a.params:>7,} {published:>9} {a.macs:>10,} {a.receptive_field:>3} "
            f"{_kb(4 * peak):>9} {_kb(peak):>9} {e.claimed_accuracy:>8.2%}  {e.title} ({e.claim})"
        )


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

    from budgetnas.search.driver import STARTED_ENV

    # a time budget counts from the command's start, its imports included
    os.environ[STARTED_ENV] = f"{_process_start():.3f}"
    app()


if __name__ == "__main__":
    main()
