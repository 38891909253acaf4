"""``budgetnas search``: a new search, or ``--resume``; its reports and last lines at the end,
what finished kept on Ctrl-C (exit code 130)."""

from __future__ import annotations

from pathlib import Path

import typer

from budgetnas.search.cli.app import (
    CACHE_HELP,
    GRAPHS_HELP,
    NO_CACHE_HELP,
    ONE_EPOCH,
    app,
    eager_steps,
    opt,
    user_errors,
    write_reports,
)
from budgetnas.search.errors import SearchStopped, VerifyFailed
from budgetnas.search.sampling.pruners import PRUNERS
from budgetnas.search.sampling.samplers import SAMPLERS
from budgetnas.search.sampling.sizing import SIZINGS
from budgetnas.search.schedule.rungs import DEFAULT_RUNGS
from budgetnas.search.study.config import RESUMABLE, SearchConfig, flag
from budgetnas.search.study.processes import MAX_CPU_WORKERS
from budgetnas.search.study.runs import open_run
from budgetnas.trainers.data import DataConfig
from budgetnas.trainers.datasets import DATASETS
from budgetnas.trainers.recipe import DEFAULT_OPTIMIZER, OPTIMIZER_DEFAULTS, TrainConfig
from budgetnas.trainers.sources import TORCHVISION_OTHERS

ADAMW = OPTIMIZER_DEFAULTS["adamw"]

# options of the command, not of the search's config
SHELL_OPTIONS = ("resume", "quiet", "cache", "no_cache", "graphs")


@app.command()
def search(
    budget: str | None = opt(
        "Hard parameter cap: 10000, 10k, 12.5k, 1.2M; or a ladder 10k,13k,25k (required for a "
        "new search).",
        "--budget",
        "-b",
    ),
    max_macs: str | None = opt(
        "Cap on multiply-accumulates per image, e.g. 2M or 500k [default: none]."
    ),
    max_activation_kb: float | None = opt(
        "Cap on peak activation memory in KB (1 KB = 1,024 bytes) at int8, one byte per "
        "element, as a runtime runs the network: layer by layer, conv+BN+ReLU fused (see "
        "`budgetnas count`) [default: none]."
    ),
    out: Path | None = opt("Run folder to create (required for a new search).", "--out", "-o"),
    resume: Path | None = opt(
        "Continue the search in this run folder with its stored settings (up to --trials in "
        f"total). Only {', '.join(map(flag, RESUMABLE))} may be given "
        "[default: none, a new search]."
    ),
    trials: int | None = opt(
        "Candidates to sample and finish (complete or pruned) at the first rung, a resumed "
        "run's included; their promotions to higher rungs come on top "
        f"[default: {SearchConfig.trials}]."
    ),
    timeout: float | None = opt(
        "Stop starting trials after this many seconds [default: none, --trials decides]."
    ),
    budget_time: str | None = opt(
        "Compute budget in wall time, e.g. 30m or 2h: new candidates are sampled while the work "
        "they commit to (their promotions and the final verification, timed on the trials so "
        "far) fits; --trials is then an upper bound [default: none, --trials decides]."
    ),
    budget_epochs: float | None = opt(
        "Compute budget counted, not timed, in trainings at the target fidelity (the recipe's "
        "epochs on the training split): e.g. 30 = the image-epochs of 30 full trainings, for "
        "every rung, promotion, reference network and the final verification together; new "
        "candidates are sampled while the planned work fits, so the last ones may end a little "
        "past it; --trials is then an upper bound [default: none]."
    ),
    rungs: int | None = opt(
        "Fidelity rungs: candidates are sampled at the cheapest, the best of each size band "
        "promoted rung by rung (each --eta times the one below in epochs x images) up to the "
        "target, the recipe's --epochs on the training split; 1: every candidate at the "
        f"target [default: {DEFAULT_RUNGS}; fewer where the target leaves no room below it, 1 "
        "with --pruner median or hyperband]."
    ),
    eta: int | None = opt(
        f"Cost ratio between rungs; the top 1/eta of a rung move up [default: {SearchConfig.eta}]."
    ),
    verify_seeds: int | None = opt(
        "At the end the front at the target (at most 5 networks), the candidates whose "
        "reading is within reach of the best under a cap and the seed networks race on new "
        "seeds: 2 each to start with, more while one is level with the leader under a cap "
        "(up to --race-seeds); the answer under each cap (the best mean validation; export "
        "ships it) and the strongest seed network under it end with at least this many, "
        f"for the verdict; 0: skip [default: {SearchConfig.verify_seeds}]."
    ),
    race_seeds: int | None = opt(
        "The most new seeds a network gets in the race at the end "
        f"[default: {SearchConfig.race_seeds}]."
    ),
    fuse_seeds: bool | None = opt(
        "The race trains a network's start seeds at once as one fused model (grouped "
        "convolutions, one copy per seed, each seeing what it would alone): each seed's result "
        "is its separate training's up to float rounding, and is not taken from or put in the "
        "results cache [default: on for CUDA, off on a CPU, where one thread per process "
        "measured it slower].",
        "--fuse-seeds/--no-fuse-seeds",
    ),
    epochs: int | None = opt(f"Training epochs per candidate [default: {TrainConfig.epochs}]."),
    batch_size: int | None = opt(
        f"Training batch size [default: {TrainConfig.batch_size}; {ONE_EPOCH['batch_size']} with "
        "--epochs 1]."
    ),
    lr: float | None = opt(
        f"Peak learning rate (OneCycle) [default: {ADAMW['lr']} with adamw; with sgd "
        f"{TrainConfig.lr}, {ONE_EPOCH['lr']} with --epochs 1]."
    ),
    optimizer: str | None = opt(
        f"sgd or adamw (AdamW with beta1 {ADAMW['beta1']}: measured ahead of SGD on small "
        f"networks at 3 epochs and at one) [default: {DEFAULT_OPTIMIZER}]."
    ),
    momentum: float | None = opt(
        f"SGD's Nesterov momentum, constant over the run (OneCycle cycles the learning rate "
        f"only; adamw ignores it) [default: {TrainConfig.momentum}]."
    ),
    weight_decay: float | None = opt(
        f"Weight decay: SGD's L2 penalty, AdamW's decoupled decay "
        f"[default: {ADAMW['weight_decay']} with adamw, {TrainConfig.weight_decay} with sgd]."
    ),
    label_smoothing: float | None = opt(
        f"Label smoothing of the loss [default: {TrainConfig.label_smoothing}]."
    ),
    augment: float | None = opt(
        "Augmentation strength: 1 = rotation ±10°, shift ±10%, scale ±10% (on the device); "
        "0 = none [default: 1; 0 with --epochs 1]."
    ),
    seed: int | None = opt(
        "Seed of the sampler and of every training run. With one trial process (--workers 1) "
        "the same command and seed sample the same specs and, on a CPU, reach the same "
        "accuracies. With several, each process's sampler is seeded from --seed and the "
        "process's index, but the processes finish trials in an order that depends on timing, "
        "and each proposes from what has finished, so the set of specs sampled may differ "
        f"[default: {SearchConfig.seed}]."
    ),
    device: str | None = opt("auto (CUDA when present), cpu, cuda, cuda:N [default: auto]."),
    precision: str | None = opt(
        "fp32, or bf16 (the forward pass under bf16 autocast; weights and updates in fp32; in "
        "channels_last order on a CPU). auto: bf16 on a CPU that computes bf16 in hardware "
        "(AVX512-BF16 or AMX: 1.5x a training step there, the same accuracy), fp32 elsewhere "
        "[default: auto]."
    ),
    dataset: str | None = opt(
        f"One of: {', '.join([*DATASETS, *TORCHVISION_OTHERS])} (the last three read from "
        f"--data-dir when on disk) [default: {DataConfig.dataset}]."
    ),
    data: Path | None = opt(
        "Your own images instead: a folder with one sub-folder per class (DATA/cat/001.png; "
        "or DATA/train/... and DATA/test/...), or an .npz with x (uint8, N x H x W [x C]) and "
        "y, optionally x_test and y_test. Channels, size, classes and normalisation come from "
        "the data; without a test part, a seeded 10% is held out as the test set "
        "[default: none, --dataset].",
        "--data",
    ),
    resize: int | None = opt(
        "Scale every image to N x N pixels, bilinear (for images of mixed or non-square "
        "sizes, or a smaller network input) [default: none, the images' own size]."
    ),
    data_dir: Path | None = opt(
        "Root folder of the data sets [default: $BUDGETNAS_DATA or ~/.cache/budgetnas/data]."
    ),
    download: bool | None = opt(
        "Download the data set when missing [default: no-download].", "--download/--no-download"
    ),
    train_subset: int | None = opt(
        "Train on a random subset of this many images (quick runs) [default: the whole "
        "training split]."
    ),
    val_size: int | None = opt(
        "Validation images carved from the training set [default: 5000 for the MNIST "
        "family, else 10% of the training images, at most 5000]."
    ),
    split_seed: int | None = opt(
        f"Seed of the train/validation split [default: {DataConfig.split_seed}]."
    ),
    sampler: str | None = opt(
        f"One of: {', '.join(SAMPLERS)}. motpe, nsga2: accuracy and parameters as two objectives "
        f"(the front); tpe: accuracy alone; random: a baseline [default: {SearchConfig.sampler}]."
    ),
    sizing: str | None = opt(
        f"One of: {', '.join(SIZINGS)}. spread: each candidate's size is assigned, spread over "
        "log(parameters) from the space's smallest target to the cap, three in six within 1.5x "
        "of the cap; aimed: spread, plus a share sized just under 70% of the two largest seed "
        "networks under the cap (where a network would dominate one), ranked and raced there; "
        "sampler: the sampler chooses sizes too (a multi-objective one drifts to small "
        f"networks) [default: {SearchConfig.sizing}]."
    ),
    pruner: str | None = opt(
        f"One of: {', '.join(PRUNERS)}. banded: median pruning among trials of similar size "
        f"[default: {SearchConfig.pruner}]."
    ),
    references: str | None = opt(
        "Seed networks trained in the study with its recipe, data and seeds, as yardsticks: "
        "all, none, or zoo keys such as 001,004 (those under a cap) [default: all]."
    ),
    space: str | None = opt(
        "The search space: a space file (TOML; budgetnas space --show prints the default, to "
        "copy and edit) or a shipped one by name: default, rich (adds depthwise-separable and "
        "inverted-residual layers, 5x5 kernels, squeeze-excitation, strided transitions) "
        "[default: default].",
        "--space",
    ),
    search_recipe: bool | None = opt(
        "Also search lr, label smoothing, dropout and augmentation strength "
        "[default: no-search-recipe].",
        "--search-recipe/--no-search-recipe",
    ),
    teacher: str | None = opt(
        "Distil from a teacher: auto (a network of 102,826 parameters trained once on the "
        "training split with the run's recipe, at least 5 epochs, kept in the results cache), "
        "or a module written by budgetnas export (its .py, with the .pt beside it); every "
        "training of the search then learns from its soft targets too. none: no teacher "
        "[default: none]."
    ),
    distill: float | None = opt(
        "With --teacher: the weight of the teacher's soft targets in the loss, in (0, 1] "
        "(temperature 4) [default: 0.5]."
    ),
    workers: int | None = opt(
        "Trial processes on this machine sharing the study [default: one per core on a CPU "
        f"(at most {MAX_CPU_WORKERS}, the cores shared among them); 1 on a GPU]."
    ),
    concurrent: str | None = opt(
        "Candidates each trial process trains at once, their steps in turn: on CUDA their "
        "kernels overlap and fill the card; on a CPU they take turns (no faster). auto: "
        "measured at the start on CUDA (a few seconds of 1, 2, 4, 8, 16 at once on the "
        "search's own candidates, the best named in the header), 1 on a CPU [default: auto]."
    ),
    storage: str | None = opt("Optuna storage URL [default: a study file in the run folder]."),
    study_name: str | None = opt(
        f"Study name inside the storage [default: {SearchConfig.study_name}].", "--study"
    ),
    heartbeat: int | None = opt(
        "Seconds between liveness beats; a trial silent for 2x this is failed and retried "
        f"[default: {SearchConfig.heartbeat}]."
    ),
    cache: Path | None = typer.Option(None, "--cache", help=CACHE_HELP),
    no_cache: bool = typer.Option(False, "--no-cache", help=NO_CACHE_HELP),
    graphs: bool = typer.Option(True, "--graphs/--no-graphs", help=GRAPHS_HELP),
    quiet: bool = typer.Option(False, help="No progress lines."),
) -> None:
    """Search for the most accurate network under --budget; writes the study and reports.

    The search runs until --trials candidates have been trained (completed or pruned) at the
    first rung and the promotions they earned up to the target; a failed trial, a candidate
    over a cap (rejected before training) and the reference networks do not count. 5
    failures in a row, or 200 rejections in a row, stop the search with one line.
    """
    given = {k: v for k, v in locals().items() if k not in SHELL_OPTIONS}
    from budgetnas.search.cache.store import open_cache
    from budgetnas.search.pipeline import run_search
    from budgetnas.search.study.options import config_from_options

    eager_steps(graphs)
    with user_errors():
        cfg = config_from_options(given, resume=resume)
        results = open_cache(cache, enabled=not no_cache)
        try:
            study = run_search(cfg, resume=resume is not None, quiet=quiet, cache=results)
        except KeyboardInterrupt:
            _interrupted(cfg)
            raise typer.Exit(130) from None
        except VerifyFailed:  # the search is done: its reports, then the line on the seeds
            write_reports(*open_run(cfg.out))
            _trim_weights(*open_run(cfg.out))
            raise
        except SearchStopped:  # what finished is reported (quietly) beside the one-line error
            from budgetnas.reports.page.run import write_run_reports

            write_run_reports(*open_run(cfg.out))
            raise
        write_reports(cfg, study)
        _trim_weights(cfg, study)


def _trim_weights(cfg: SearchConfig, study) -> None:
    """The end of a search: drop the weights no one can be handed any more
    (``search.handback.run_weights``), and say what is kept."""
    from budgetnas.search.handback.run_weights import trim_weights, weights_line

    typer.echo(weights_line(trim_weights(cfg, study)), err=True)


def _interrupted(cfg: SearchConfig) -> None:
    typer.echo("\ninterrupted: finished trials are kept in the study", err=True)
    try:
        write_reports(*open_run(cfg.out))
    except Exception as err:  # the study may not exist yet
        typer.echo(f"(no report written: {err})", err=True)
    typer.echo(f"continue with: budgetnas search --resume {cfg.out}", err=True)
