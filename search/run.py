"""A search run: its config, its Optuna study, its objective, and the loop that drives them.

A run folder holds ``config.json`` (the exact settings), the study (``study.db``, SQLite, unless
``--storage`` named another Optuna storage), ``weights/`` (one file per completed trial) and
the reports. Everything a report or an export needs is on the study's trials: the spec JSON,
the counts, the validation curve, the train time and the device.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from budgetnas.search.budget import format_params
from budgetnas.search.errors import SearchError
from budgetnas.search.progress import Progress
from budgetnas.search.pruners import PRUNERS, make_pruner
from budgetnas.search.recipe import sample_recipe, scaled_augment
from budgetnas.search.storage import fail_orphans, is_rdb, journal_url, open_storage
from budgetnas.space.count import analyze
from budgetnas.space.sample import Rejected, SpaceConfig, sample_spec, smallest_network
from budgetnas.space.spec import ArchSpec, SpecError
from budgetnas.trainers.data import TrainVal, dataset_info, load_train_val
from budgetnas.trainers.train import TrainConfig, TrainingError, resolve_device, train

CONFIG_FILE = "config.json"
STUDY_FILE = "study.db"
JOURNAL_FILE = "study.journal"
WEIGHTS_DIR = "weights"
WORKER = f"{socket.gethostname()}:{os.getpid()}"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# A trial's own failures: the trial is marked failed with the reason, the search goes on.
TRIAL_ERRORS = (TrainingError, SpecError, torch.cuda.OutOfMemoryError)


@dataclass(frozen=True)
class SearchConfig:
    """Everything that defines a search; saved as ``config.json`` in the run folder."""

    budget: int  # the hard cap: the largest rung of the ladder
    out: str
    ladder: tuple[int, ...] = ()  # several caps answered by one search; () means (budget,)
    dataset: str = "mnist"
    trials: int = 50
    timeout: float | None = None
    epochs: int = 15
    batch_size: int = 128
    lr: float = 0.05
    optimizer: str = "sgd"
    label_smoothing: float = 0.0
    augment: float = 1.0  # strength: 1 = rotation ±10°, shift ±10%, scale ±10%; 0 = none
    seed: int = 0
    device: str = "auto"
    train_subset: int | None = None
    val_size: int = 5000
    split_seed: int = 0
    data_dir: str | None = None
    download: bool = False
    storage: str | None = None
    study_name: str = "budgetnas"
    pruner: str = "banded"
    search_recipe: bool = False
    heartbeat: int = 30  # seconds; a trial silent for twice this long is failed and retried
    workers: int = 1  # trial processes on this machine, sharing the study

    def __post_init__(self) -> None:
        if self.budget < 1:
            raise SearchError(f"budget must be at least 1 parameter, got {self.budget}")
        if self.ladder and max(self.ladder) != self.budget:
            raise SearchError("the budget must be the largest cap of the ladder")
        if self.trials < 1:
            raise SearchError(f"--trials must be at least 1, got {self.trials}")
        if self.epochs < 1:
            raise SearchError(f"--epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise SearchError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.timeout is not None and self.timeout <= 0:
            raise SearchError(f"--timeout must be positive, got {self.timeout}")
        if not 0 <= self.augment <= 3:
            raise SearchError(f"--augment must be between 0 and 3, got {self.augment}")
        if self.workers < 1:
            raise SearchError(f"--workers must be at least 1, got {self.workers}")
        if self.pruner not in PRUNERS:
            raise SearchError(f"unknown pruner {self.pruner!r}; choose {', '.join(PRUNERS)}")
        dataset_info(self.dataset)  # raises DataError for an unknown name
        smallest = smallest_network(self.space_config())
        for cap in self.caps:
            if cap < smallest:
                raise SearchError(
                    f"budget {cap:,} is below the smallest network the space can build "
                    f"({smallest:,} parameters)"
                )

    @property
    def caps(self) -> tuple[int, ...]:
        """The caps this search answers, ascending; the last is the hard cap."""
        return tuple(sorted(set(self.ladder))) if self.ladder else (self.budget,)

    def space_config(self, dropout: float = 0.0) -> SpaceConfig:
        info = dataset_info(self.dataset)
        return SpaceConfig(
            in_channels=info.in_channels,
            input_size=info.image_size,
            num_classes=info.num_classes,
            norm=(info.mean, info.std),
            dropout=dropout,
        )

    def train_config(self) -> TrainConfig:
        return TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            optimizer=self.optimizer,
            label_smoothing=self.label_smoothing,
            augment=scaled_augment(float(self.augment)),
            seed=self.seed,
        )

    def storage_url(self) -> str:
        """--storage, else a SQLite file in the run folder, or for several workers a journal
        file (SQLite would lock under concurrent writers)."""
        if self.storage:
            return self.storage
        if self.workers > 1:
            return journal_url((Path(self.out) / JOURNAL_FILE).resolve())
        return f"sqlite:///{(Path(self.out) / STUDY_FILE).resolve()}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SearchConfig:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["ladder"] = tuple(kwargs.get("ladder") or ())
        return cls(**kwargs)


def _sampler(seed: int) -> optuna.samplers.BaseSampler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            seed=seed, multivariate=True, group=True, n_startup_trials=10, constant_liar=True
        )


def candidate_key(spec: ArchSpec, recipe: TrainConfig) -> str:
    """Canonical identity of a candidate: the spec and the recipe it is trained with."""
    text = spec.to_json() + json.dumps(recipe.to_dict(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


class Objective:
    """Sample a spec, enforce the cap, train, report each epoch; store everything on the trial.

    With a budget ladder, trial n aims at cap ``caps[n % len(caps)]``, so candidates spread
    over every rung. A candidate identical (spec and recipe) to one already trained in the
    study reuses that result instead of training again.
    """

    def __init__(
        self, cfg: SearchConfig, data: TrainVal, device: torch.device, progress: Progress
    ) -> None:
        self.cfg, self.data, self.device, self.progress = cfg, data, device, progress
        self.train_cfg = cfg.train_config()
        self.weights_dir = Path(cfg.out) / WEIGHTS_DIR

    def __call__(self, trial: optuna.Trial) -> float:
        caps = self.cfg.caps
        cap = caps[trial.number % len(caps)]
        recipe, dropout = self.train_cfg, 0.0
        if self.cfg.search_recipe:
            recipe, dropout = sample_recipe(trial, self.train_cfg)
        trial.set_user_attr("cap", cap)
        trial.set_user_attr("worker", WORKER)
        try:
            spec = sample_spec(trial, budget=cap, cfg=self.cfg.space_config(dropout))
        except Rejected as rej:
            trial.set_user_attr("rejected", rej.reason)
            trial.set_user_attr("params", rej.params)
            raise optuna.TrialPruned(f"rejected: {rej.reason}") from None
        except SpecError as err:
            trial.set_user_attr("error", f"SpecError: {err}")
            raise
        stats = analyze(spec)
        key = candidate_key(spec, recipe)
        trial.set_user_attr("spec", spec.to_json())
        trial.set_user_attr("summary", spec.summary())
        trial.set_user_attr("params", stats.params)
        trial.set_user_attr("macs", stats.macs)
        trial.set_user_attr("receptive_field", stats.receptive_field)
        trial.set_user_attr("recipe", recipe.to_dict())
        trial.set_user_attr("key", key)
        if stats.params > self.cfg.budget:  # the hard cap, checked before anything is built
            trial.set_user_attr("rejected", f"{stats.params:,} parameters over the cap")
            raise optuna.TrialPruned("rejected: over the parameter cap")
        earlier = self._earlier(trial, key)
        if earlier is not None:
            return self._reuse(trial, earlier)

        curve: list[float] = []
        epochs = recipe.epochs

        def on_epoch(epoch: int, acc: float, loss: float) -> None:
            curve.append(acc)
            trial.set_user_attr("val_curve", curve)
            trial.report(acc, epoch)
            self.progress.epoch(trial.number, epoch, epochs, acc)
            if epoch + 1 < epochs and trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {epoch + 1} at {acc:.4f}")

        trial.set_user_attr("device", str(self.device))
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
        start = time.perf_counter()
        try:
            result = train(spec, self.data, recipe, device=self.device, on_epoch=on_epoch)
        except TRIAL_ERRORS as err:
            trial.set_user_attr("error", f"{type(err).__name__}: {err}"[:2000])
            if isinstance(err, torch.cuda.OutOfMemoryError):
                torch.cuda.empty_cache()
            raise
        finally:  # also for pruned trials
            trial.set_user_attr("wall_time_s", round(time.perf_counter() - start, 3))
            if cuda:
                peak = torch.cuda.max_memory_allocated(self.device) / 2**20
                trial.set_user_attr("peak_gpu_mem_mb", round(peak, 1))
        self.weights_dir.mkdir(parents=True, exist_ok=True)
        path = self.weights_dir / f"trial-{trial.number:05d}.pt"
        torch.save({k: v.cpu() for k, v in result.model.state_dict().items()}, path)
        trial.set_user_attr("weights", str(path.relative_to(self.cfg.out)))
        trial.set_user_attr("train_time_s", round(result.train_time_s, 3))
        trial.set_user_attr("device", result.device)
        trial.set_user_attr("loss_curve", result.loss_curve)
        return result.val_acc

    @staticmethod
    def _earlier(trial: optuna.Trial, key: str) -> optuna.trial.FrozenTrial | None:
        states = (TrialState.COMPLETE, TrialState.PRUNED)
        for t in trial.study.get_trials(deepcopy=False, states=states):
            if t.user_attrs.get("key") == key and t.user_attrs.get("duplicate_of") is None:
                return t
        return None

    @staticmethod
    def _reuse(trial: optuna.Trial, earlier: optuna.trial.FrozenTrial) -> float:
        trial.set_user_attr("duplicate_of", earlier.number)
        for name in ("val_curve", "loss_curve", "weights", "device"):
            if name in earlier.user_attrs:
                trial.set_user_attr(name, earlier.user_attrs[name])
        trial.set_user_attr("train_time_s", 0.0)
        if earlier.state == TrialState.PRUNED:
            raise optuna.TrialPruned(f"same candidate as trial {earlier.number}, which was pruned")
        return float(earlier.value)


def finished(study: optuna.Study) -> int:
    """Trials that count towards ``--trials``: completed or pruned (a failed one is retried)."""
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def run_search(cfg: SearchConfig, *, resume: bool = False, quiet: bool = False) -> optuna.Study:
    """Run (or continue) the search until ``cfg.trials`` trials have finished or time is up."""
    out = Path(cfg.out)
    config_path = out / CONFIG_FILE
    if not resume and config_path.exists():
        raise SearchError(
            f"{out} already holds a search; continue it with --resume {out} or choose another --out"
        )
    # a bad --storage URL fails first, before data is loaded or anything is written
    storage = open_storage(cfg.storage, heartbeat=cfg.heartbeat) if cfg.storage else None
    device, data = _prepare(cfg)
    out.mkdir(parents=True, exist_ok=True)
    storage = storage or open_storage(cfg.storage_url(), heartbeat=cfg.heartbeat)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        storage=storage,
        study_name=cfg.study_name,
        direction="maximize",
        sampler=_sampler(cfg.seed),
        pruner=make_pruner(cfg.pruner),
        load_if_exists=True,
    )
    config_path.write_text(cfg.to_json())
    study.set_user_attr("budget", cfg.budget)
    study.set_user_attr("dataset", cfg.dataset)
    study.set_user_attr("config", json.loads(cfg.to_json()))
    if resume and not is_rdb(cfg.storage_url()):
        orphans = fail_orphans(study)  # no heartbeat here: the dead run's trials are ours
        if orphans and not quiet:
            print(
                f"trials {orphans} were left running by a dead process: failed, queued again",
                file=sys.stderr,
            )
    helpers = _spawn_workers(cfg) if cfg.workers > 1 else []
    try:
        _drive(cfg, study, device, data, quiet=quiet)
    finally:
        for proc in helpers:
            if proc.wait() != 0 and not quiet:
                print(f"worker process {proc.pid} exited with {proc.returncode}", file=sys.stderr)
    return study


def _threads_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers)


def _spawn_workers(cfg: SearchConfig) -> list[subprocess.Popen]:
    """cfg.workers - 1 more processes working on the same study (this one is the first)."""
    threads = _threads_per_worker(cfg.workers)
    torch.set_num_threads(threads)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    cmd = [
        sys.executable,
        "-m",
        "budgetnas.search.cli",
        "worker",
        "--storage",
        cfg.storage_url(),
        "--study",
        cfg.study_name,
        "--out",
        str(cfg.out),
        "--quiet",
    ]
    return [subprocess.Popen(cmd, env=env) for _ in range(cfg.workers - 1)]


def run_worker(
    storage: str,
    study_name: str,
    *,
    out: Path | str,
    device: str | None = None,
    data_dir: str | None = None,
    quiet: bool = False,
) -> optuna.Study:
    """Join an existing study (e.g. on PostgreSQL) from this machine and work on it until the
    study has its trial count. Weights of the trials trained here go to ``out``."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    store = open_storage(storage)
    try:
        study = optuna.load_study(study_name=study_name, storage=store)
    except KeyError:
        raise SearchError(f"no study named {study_name!r} in {storage}") from None
    stored = study.user_attrs.get("config")
    if not stored:
        raise SearchError(f"study {study_name!r} was not made by budgetnas search (no config)")
    cfg = SearchConfig.from_json(json.dumps(stored))
    overrides: dict[str, Any] = {"out": str(out), "storage": storage, "study_name": study_name}
    if device is not None:
        overrides["device"] = device
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    cfg = replace(cfg, **overrides)
    device_, data = _prepare(cfg)
    Path(out).mkdir(parents=True, exist_ok=True)
    if not (Path(out) / CONFIG_FILE).exists():  # a helper process of a local run shares it
        (Path(out) / CONFIG_FILE).write_text(cfg.to_json())
    store = open_storage(storage, heartbeat=cfg.heartbeat)
    # each worker samples with its own seed, or workers would propose the same candidates
    seed = (
        cfg.seed
        + 1
        + int(hashlib.sha256(f"{socket.gethostname()}:{os.getpid()}".encode()).hexdigest()[:6], 16)
    )
    study = optuna.load_study(
        study_name=study_name,
        storage=store,
        sampler=_sampler(seed),
        pruner=make_pruner(cfg.pruner),
    )
    _drive(cfg, study, device_, data, quiet=quiet)
    return study


def _prepare(cfg: SearchConfig) -> tuple[torch.device, TrainVal]:
    device = resolve_device(cfg.device)
    data = load_train_val(
        cfg.dataset,
        data_dir=cfg.data_dir,
        val_size=cfg.val_size,
        split_seed=cfg.split_seed,
        train_subset=cfg.train_subset,
        device=device,
        download=cfg.download,
    )
    return device, data


def _drive(
    cfg: SearchConfig, study: optuna.Study, device: torch.device, data: TrainVal, *, quiet: bool
) -> None:
    done = finished(study)
    progress = Progress(total=cfg.trials, done=done, timeout=cfg.timeout, quiet=quiet)
    progress.header(
        f"budgetnas: cap {cfg.budget:,} params ({format_params(cfg.budget)}), {cfg.dataset} "
        f"({len(data.train):,} train / {len(data.val):,} val), {cfg.trials} trials x "
        f"{cfg.epochs} epochs on {device}" + (f"; resuming after {done} trials" if done else "")
    )
    remaining = cfg.trials - done
    if remaining <= 0:
        return
    # n_trials bounds this process; MaxTrialsCallback stops it when other workers have
    # brought the study to its count first.
    stop = optuna.study.MaxTrialsCallback(cfg.trials, states=FINISHED)
    study.optimize(
        Objective(cfg, data, device, progress),
        n_trials=remaining,
        timeout=cfg.timeout,
        callbacks=[progress, stop],
        catch=TRIAL_ERRORS,
    )


def open_run(run: Path | str) -> tuple[SearchConfig, optuna.Study]:
    """The config and study of an existing run folder."""
    run = Path(run)
    if not run.is_dir():
        raise SearchError(f"run folder {run} does not exist")
    config_path = run / CONFIG_FILE
    if not config_path.is_file():
        raise SearchError(f"{run} holds no budgetnas run (no {CONFIG_FILE})")
    try:
        cfg = SearchConfig.from_json(config_path.read_text())
    except (json.JSONDecodeError, TypeError) as err:
        raise SearchError(f"{config_path} is unreadable: {err}") from None
    cfg = replace(cfg, out=str(run))
    study_file = run / (JOURNAL_FILE if cfg.workers > 1 else STUDY_FILE)
    if cfg.storage is None and not study_file.is_file():
        raise SearchError(f"{run} holds no study ({study_file.name} is missing)")
    storage = open_storage(cfg.storage_url(), heartbeat=cfg.heartbeat)
    try:
        study = optuna.load_study(study_name=cfg.study_name, storage=storage)
    except KeyError:
        raise SearchError(f"{run} holds no study named {cfg.study_name!r}") from None
    return cfg, study


def trial_spec(trial: optuna.trial.FrozenTrial) -> ArchSpec:
    """The spec stored on a trial (what reports, export and re-training rebuild from)."""
    text = trial.user_attrs.get("spec")
    if text is None:
        raise SearchError(f"trial {trial.number} has no stored spec (it was rejected)")
    return ArchSpec.from_json(text)


def summary_counts(study: optuna.Study) -> dict[str, Any]:
    trials = study.get_trials(deepcopy=False)
    rejected = sum(1 for t in trials if t.user_attrs.get("rejected"))
    counts = {
        "complete": sum(t.state == TrialState.COMPLETE for t in trials),
        "duplicates": sum(t.user_attrs.get("duplicate_of") is not None for t in trials),
        "pruned": sum(t.state == TrialState.PRUNED for t in trials) - rejected,
        "rejected": rejected,
        "failed": sum(t.state == TrialState.FAIL for t in trials),
    }
    counts["total"] = len(trials)
    counts["rejected_fraction"] = rejected / len(trials) if trials else 0.0
    return counts
