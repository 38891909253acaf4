"""The driver: open (or refuse) the study, load the data once, run trials until enough have
finished, and stop on a time limit or on failures that keep coming.

``run_search`` starts or resumes the search of a run folder; ``run_worker`` joins a study made
elsewhere (several machines on one RDB storage, or the helper processes of ``--workers``).
"""

from __future__ import annotations

import hashlib
import math
import os
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from budgetnas.reports.front.frame import trials_frame
from budgetnas.reports.front.pareto import pareto_front
from budgetnas.search.cache.store import ResultCache, helper_env
from budgetnas.search.errors import SearchError, SearchStopped, VerifyFailed
from budgetnas.search.sampling.objective import Objective
from budgetnas.search.sampling.pruners import make_pruner
from budgetnas.search.sampling.samplers import (
    directions,
    is_multi_objective,
    make_sampler,
    metric_names,
)
from budgetnas.search.schedule.budgets import EpochBudget, Plan, TimeBudget
from budgetnas.search.schedule.rungs import MIN_RUNG_STEPS, rung_steps
from budgetnas.search.schedule.trials import rung0_used, rung_of
from budgetnas.search.schedule.yardsticks import (
    check_budget_fits,
    empty_front_line,
    held_by_cache,
    pending_by_reference,
    plan_yardsticks,
    reference_weights,
    time_costs,
)
from budgetnas.search.study.config import (
    CONFIG_FILE,
    UNLIMITED,
    SearchConfig,
    auto_rungs,
    differences,
    usable_cores,
)
from budgetnas.search.study.processes import RunLock, start_helper, supervised
from budgetnas.search.study.progress import Progress
from budgetnas.search.study.runs import (
    CONFIG_ATTR,
    DIGEST_ATTR,
    FINGERPRINT_ATTR,
    FINISHED,
    finished,
    is_rejected,
)
from budgetnas.search.study.storage import fail_orphans, is_rdb, open_storage, requeue_lost
from budgetnas.search.study.teacher import attach_teacher, start_teacher
from budgetnas.search.units import format_params
from budgetnas.search.verification.racing import END_MARGIN_S, run_race
from budgetnas.search.verification.records import failure_message, stored_results
from budgetnas.trainers.data import TrainVal
from budgetnas.trainers.evaluate import resolve_device

IDLE_IN_A_ROW = 3  # a process stops after this many trials in a row found nothing to do
DEADLINE_ATTR = "deadline"  # study user attribute: --budget-time's end, seconds since the epoch
# study user attribute: a reference network's image-epoch in a candidate's, as timed at the start
REFERENCE_WEIGHT_ATTR = "reference_weight"
# the share of the references' verification the results cache did not hold at the start
REFERENCE_PENDING_ATTR = "reference_pending"
# each reference network's seconds per image, as timed at the start (to weigh that share again
# on --resume, with what the cache holds then)
REFERENCE_RATES_ATTR = "reference_rates"
# study user attribute: seconds the end of a search takes besides the race's trainings (its
# helper processes starting and loading the data, the reports), as timed at the start
OVERHEAD_ATTR = "end_overhead_s"
STARTED_ENV = "BUDGETNAS_STARTED"  # the command's start (seconds since the epoch), set by the CLI

# A search stops (exit 1, with the reason) after this many trials in a row failed, or after
# this many candidates in a row were rejected before training (over a cap).
FAILURES_IN_A_ROW = 5
REJECTIONS_IN_A_ROW = 200


def sampler_seed(seed: int, trials_so_far: int, worker: str = "") -> int:
    """The run's seed for a fresh study; for a resumed study (or another worker) a seed
    derived from it and the trials already there, so the sampler does not replay its first
    proposals."""
    if trials_so_far == 0 and not worker:
        return seed
    digest = hashlib.sha256(f"{seed}:{trials_so_far}:{worker}".encode()).hexdigest()
    return int(digest[:8], 16)


def helper_seed(seed: int, index: int, trials_so_far: int = 0) -> int:
    """The sampler seed of helper process ``index`` (1, 2, ...; the first process is 0) of a
    search with ``--seed seed``, started when the study held ``trials_so_far`` trials (0 for a
    new search): the same for the same command, and its own for each helper."""
    return sampler_seed(seed, trials_so_far, f"helper {index}")


def _pruner(cfg: SearchConfig) -> optuna.pruners.BasePruner:
    """Optuna's pruner for a single-objective study; a multi-objective one prunes inside the
    objective (Optuna's pruners do not support several objectives)."""
    return (
        optuna.pruners.NopPruner() if is_multi_objective(cfg.sampler) else make_pruner(cfg.pruner)
    )


def _load(cfg: SearchConfig, storage, seed: int) -> optuna.Study:
    study = optuna.load_study(
        study_name=cfg.study_name,
        storage=storage,
        sampler=make_sampler(cfg.sampler, seed, cfg.sizing),
        pruner=_pruner(cfg),
    )
    if len(study.directions) != len(directions(cfg.sampler)):
        raise SearchError(
            f"study {cfg.study_name!r} has {len(study.directions)} objective(s), but sampler "
            f"{cfg.sampler!r} needs {len(directions(cfg.sampler))}"
        )
    return study


def queue_references(cfg: SearchConfig, study: optuna.Study) -> list[tuple[str, int]]:
    """Queue the reference networks the study does not hold yet, one per rung (yardsticks at
    every fidelity; at the target only where a time budget left them no more, see
    ``search.yardsticks``); returns (key, rung) of those queued."""
    held = {
        (t.user_attrs.get("reference"), rung_of(t))
        for t in study.get_trials(deepcopy=False)
        if t.state != TrialState.FAIL
    }
    queued = []
    for rung in cfg.reference_rung_indices():
        for key, (_, cap) in cfg.reference_specs().items():
            if (key, rung) not in held:
                attrs = {"reference": key, "cap": cap, "rung": rung}
                study.enqueue_trial({}, user_attrs=attrs)
                queued.append((key, rung))
    return queued


class ScheduleGuard:
    """Optuna callback: after each trial, asks the schedule what comes next (over every
    process): stops the study when nothing is left, waits while other processes' trials
    run and nothing can start before they end (the promotions they may unlock)."""

    def __init__(self, cfg: SearchConfig, budget: TimeBudget | None, poll: float = 2.0) -> None:
        self.cfg, self.budget, self.poll = cfg, budget, poll
        self.schedule = cfg.schedule
        self.idle = 0  # trials in a row that found nothing to do
        self.stopped = ""  # why the search stopped before the schedule's end, if it did
        self.race_due = False  # the time budget left only the race's time
        self.epochs = (
            EpochBudget(cfg.budget_epochs * cfg.schedule.target.image_epochs, plan(cfg))
            if cfg.budget_epochs
            else None
        )

    def sampling_open(self, trials: list[FrozenTrial]) -> bool | None:
        """None: --trials alone decides; else whether the budgets take another candidate."""
        if self.budget is None and self.epochs is None:
            return None
        within = self.budget is None or self.budget.sampling_open(trials, time.time())
        within = within and (self.epochs is None or self.epochs.sampling_open(trials))
        return within and sum(1 for t in trials if rung0_used(t)) < self.cfg.trials

    def job(self, study: optuna.Study):
        trials = study.get_trials(deepcopy=False)
        return self.schedule.next_job(
            trials, sampling_open=self.sampling_open(trials), trials_wanted=self.cfg.trials
        )

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.idle = self.idle + 1 if trial.user_attrs.get("idle") else 0
        if self.idle >= IDLE_IN_A_ROW:  # the schedule and the objective disagree: do not spin
            self.stopped = "processes kept finding nothing to do"
            study.stop()
            return
        if self.budget is not None and self.budget.race_due(
            study.get_trials(deepcopy=False), time.time()
        ):
            self.race_due = True  # the race at the end needs what is left of the time budget
            study.stop()
            return
        job = self.job(study)
        waited = 0.0
        while job.kind == "wait":
            # a trial whose process died stops beating: fail it, and its copy is queued
            _fail_stale_trials(study)
            if waited > self.patience(study):
                self.stopped = (
                    f"waited {waited:.0f} s for trials other processes run "
                    f"({', '.join(str(t.number) for t in _running(study))})"
                )
                study.stop()
                return
            time.sleep(self.poll)
            waited += self.poll
            job = self.job(study)
        if job.kind == "done":
            study.stop()

    def patience(self, study: optuna.Study) -> float:
        """How long to wait for other processes' trials: three times the longest trial yet,
        at least ten minutes (then the search stops; --resume continues it)."""
        longest = max(
            (float(t.user_attrs.get("wall_time_s") or 0) for t in study.get_trials(deepcopy=False)),
            default=0.0,
        )
        return max(600.0, 3 * longest)


def _fail_stale_trials(study: optuna.Study) -> None:
    """Optuna's ``fail_stale_trials``, without its ExperimentalWarning in the progress table
    (silenced for this call only)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


class FailureGuard:
    """Optuna callback: stops the study after ``limit`` failed trials in a row."""

    def __init__(self, limit: int = FAILURES_IN_A_ROW) -> None:
        self.limit = limit
        self.failed: list[FrozenTrial] = []

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.state == TrialState.FAIL:
            self.failed.append(trial)
            if self.tripped:
                study.stop()
        elif trial.state in FINISHED:
            self.failed.clear()

    @property
    def tripped(self) -> bool:
        return len(self.failed) >= self.limit

    def error(self) -> SearchError:
        numbers = ", ".join(str(t.number) for t in self.failed)
        last = self.failed[-1].user_attrs.get("error", "no reason recorded")
        return SearchStopped(
            f"{len(self.failed)} trials failed in a row (trials {numbers}); the last: {last}. "
            "Finished trials are kept: fix the cause, then continue with --resume"
        )


class RejectionGuard:
    """Optuna callback: stops the study after ``limit`` candidates in a row were rejected
    before training. Rejections do not count towards ``--trials`` (the space is not narrowed
    to make candidates fit), so caps that almost no structure fits would otherwise sample on
    for ever."""

    def __init__(self, limit: int = REJECTIONS_IN_A_ROW) -> None:
        self.limit = limit
        self.in_a_row = 0
        self.last = ""

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.user_attrs.get("reference"):
            return
        if is_rejected(trial):
            self.in_a_row += 1
            self.last = str(trial.user_attrs["rejected"])
            if self.tripped:
                study.stop()
        elif trial.state in FINISHED:
            self.in_a_row = 0

    @property
    def tripped(self) -> bool:
        return self.in_a_row >= self.limit

    def error(self) -> SearchError:
        return SearchStopped(
            f"{self.in_a_row} candidates in a row were over a cap before training (the last: "
            f"{self.last}); the caps leave almost nothing of the space. Finished trials are "
            "kept: raise --budget, --max-macs or --max-activation-kb in a new search"
        )


def _study_attrs(storage: optuna.storages.BaseStorage, name: str) -> dict | None:
    """The user attributes of study ``name`` in ``storage``, or None if there is none."""
    try:
        return storage.get_study_user_attrs(storage.get_study_id_from_name(name))
    except KeyError:
        return None


def _refuse_existing(cfg: SearchConfig, attrs: dict) -> SearchError:
    where = f"study {cfg.study_name!r} in {cfg.storage_url()}"
    diff = differences(attrs.get(FINGERPRINT_ATTR) or {}, cfg.fingerprint())
    if diff:
        return SearchError(
            f"{where} holds a search with other settings ({'; '.join(diff)}); "
            "choose another --study"
        )
    return SearchError(
        f"{where} already exists; add processes to it with `budgetnas worker --storage URL "
        f"--study {cfg.study_name}`, or choose another --study"
    )


def _check_fingerprint(cfg: SearchConfig, attrs: dict, what: str) -> None:
    stored = attrs.get(FINGERPRINT_ATTR)
    if stored is None:
        return  # a study made before fingerprints were stored: adopted as it is
    ours = cfg.fingerprint()
    if stored.get("version") != ours["version"]:
        raise SearchError(
            f"{what}: its study was made by an earlier budgetnas (settings version "
            f"{stored.get('version')}, this one reads {ours['version']}: it trains and chooses "
            "candidates differently); start a new search, or use the version that made it"
        )
    diff = differences(stored, ours)
    if diff:
        raise SearchError(
            f"{what} does not match its study's settings ({'; '.join(diff)}); nothing was run"
        )


def _check_digest(cfg: SearchConfig, attrs: dict, data: TrainVal) -> None:
    stored = attrs.get(DIGEST_ATTR)
    if stored and stored != data.digest:
        where, option = (
            (cfg.data.path, "--data") if cfg.data.path else (cfg.data.data_dir, "--data-dir")
        )
        raise SearchError(
            f"the {cfg.data.dataset} data read from {where} differ from the data "
            f"the study was searched on (digest {data.digest[:12]} here, {stored[:12]} in "
            f"the study); point {option} at the same files"
        )


def run_search(
    cfg: SearchConfig,
    *,
    resume: bool = False,
    quiet: bool = False,
    cache: ResultCache | None = None,
) -> optuna.Study:
    """Run (or continue) the search until ``cfg.trials`` trials have finished or time is up.

    A new search never joins an existing study; a resumed one only continues its own, with
    the same fingerprint and the same data. ``cache``: finished trainings shared with other
    searches (``search.cache``); None: every training runs. Raises ``VerifyFailed`` when
    seeds of the final verification failed (the search and the other seeds are stored).

    The run folder is locked while the search runs (``search.processes.RunLock``): a second
    search or resume there meanwhile raises ``SearchError`` and changes nothing.
    """
    with RunLock(cfg.out) as lock:
        if resume:
            lock.acquire()  # before anything is read or changed
        return _run_search(cfg, lock, resume=resume, quiet=quiet, cache=cache)


def _run_search(
    cfg: SearchConfig,
    lock: RunLock,
    *,
    resume: bool,
    quiet: bool,
    cache: ResultCache | None,
) -> optuna.Study:
    # --budget-time counts from the command's start (the timing of the yardsticks too)
    started = time.time()
    begun = float(os.environ.get(STARTED_ENV) or started)
    startup = max(0.0, started - begun)  # what a process takes to start: a race helper too
    started = min(started, begun)
    out = Path(cfg.out)
    if not resume and (out / CONFIG_FILE).exists():
        raise SearchError(
            f"{out} already holds a search; continue it with --resume {out} or choose another --out"
        )
    # a bad --storage URL, or a study that is already there, fails before data is loaded
    storage = open_storage(cfg.storage, heartbeat=cfg.heartbeat) if cfg.storage else None
    attrs = _study_attrs(storage, cfg.study_name) if storage is not None else None
    if not resume and attrs is not None:
        raise _refuse_existing(cfg, attrs)
    loading = time.time()
    device, data = _prepare(cfg)
    if not resume:  # --teacher: trained or loaded once, named in the recipe (fingerprinted)
        cfg, data = start_teacher(cfg, data, device=device, cache=cache, quiet=quiet)
    # what follows the trials: the race's helpers start and load the data, then the reports
    overhead = round(max(startup, 1.0) + (time.time() - loading) + END_MARGIN_S, 3)
    notes, weight, pending, rates = [], None, 1.0, None
    if not resume and cfg.budget_time:
        # the yardsticks' share of the time budget, before anything is trained or written
        costs = time_costs(cfg, data, device, threads=_threads_per_worker(cfg.workers), cache=cache)
        if costs is not None:
            spent = time.time() - started
            check_budget_fits(cfg, costs, overhead=overhead + spent)
        if costs is not None and costs.references:
            cfg, note = plan_yardsticks(cfg, costs)
            notes += [note] if note else []
            weight = reference_weights(costs)
            pending = pending_by_reference(cfg, costs.references, costs.cached)
            rates = costs.references
    out.mkdir(parents=True, exist_ok=True)
    lock.acquire()
    storage = storage or open_storage(cfg.storage_url(), heartbeat=cfg.heartbeat)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # failures: one progress line each
    so_far = 0  # trials in the study before this run of it
    if resume:
        attrs = _study_attrs(storage, cfg.study_name)
        if attrs is None:
            raise SearchError(f"{out} holds no study named {cfg.study_name!r}")
        _check_fingerprint(cfg, attrs, f"{out / CONFIG_FILE}")
        _check_digest(cfg, attrs, data)
        so_far = len(optuna.load_study(study_name=cfg.study_name, storage=storage).trials)
        study = _load(cfg, storage, sampler_seed(cfg.seed, so_far))
        cfg.check_references(study.get_trials(deepcopy=False))  # a seed network changed
        # the cache (or the device, or the verify seeds) may differ from the first run's
        rates = study.user_attrs.get(REFERENCE_RATES_ATTR)
        if rates:  # a search that timed its yardsticks (a time budget) has them
            held = held_by_cache(cfg, data, device, cache)
            study.set_user_attr(REFERENCE_PENDING_ATTR, pending_by_reference(cfg, rates, held))
    else:
        try:
            study = optuna.create_study(
                storage=storage,
                study_name=cfg.study_name,
                directions=directions(cfg.sampler),
                sampler=make_sampler(cfg.sampler, cfg.seed, cfg.sizing),
                pruner=_pruner(cfg),
            )
        except optuna.exceptions.DuplicatedStudyError:
            raise SearchError(f"study {cfg.study_name!r} was created meanwhile") from None
        study.set_user_attr(FINGERPRINT_ATTR, cfg.fingerprint())
        study.set_user_attr(DIGEST_ATTR, data.digest)
        if weight is not None:
            study.set_user_attr(REFERENCE_WEIGHT_ATTR, weight)
            study.set_user_attr(REFERENCE_PENDING_ATTR, pending)
            study.set_user_attr(REFERENCE_RATES_ATTR, rates)
        _name_metrics(study, cfg.sampler)
    (out / CONFIG_FILE).write_text(cfg.to_json())
    study.set_user_attr(CONFIG_ATTR, cfg.to_dict())
    deadline = started + cfg.budget_time if cfg.budget_time else None
    study.set_user_attr(DEADLINE_ATTR, deadline)
    study.set_user_attr(OVERHEAD_ATTR, overhead)
    if resume:
        _take_back(cfg, study, quiet=quiet)
    queue_references(cfg, study)
    threads = torch.get_num_threads()
    helpers = _spawn_workers(cfg, cache, trials_so_far=so_far) if cfg.workers > 1 else []
    try:
        # the helpers end with this process: waited for, or stopped on Ctrl-C or an error
        with supervised(helpers, what="worker", quiet=quiet):
            progress = _drive(cfg, study, device, data, quiet=quiet, cache=cache, notes=notes)
    finally:
        torch.set_num_threads(threads)  # the verification runs alone: every core again
    if progress is not None and helpers:
        progress.flush(study)  # the last trials of the other processes
    budget = _time_budget(cfg, study)
    due = budget is not None and budget.race_due(study.get_trials(deepcopy=False), time.time())
    if ScheduleGuard(cfg, budget).job(study).kind == "done" or due:
        verify_front(cfg, study, quiet=quiet, cache=cache)
    elif not quiet:
        why = "--timeout" if cfg.timeout else "see above"
        print(
            f"stopped before the end of the schedule ({why}); continue with "
            f"budgetnas search --resume {cfg.out}",
            file=sys.stderr,
        )
    return study


def _name_metrics(study: optuna.Study, sampler: str) -> None:
    """Name a new study's objectives, for optuna-dashboard and Optuna's plots (Optuna 3.2
    and later; an earlier Optuna leaves them unnamed)."""
    name = getattr(study, "set_metric_names", None)
    if name is None:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        name(metric_names(sampler))


def _take_back(cfg: SearchConfig, study: optuna.Study, *, quiet: bool) -> None:
    """On ``--resume``, before any trial starts: the trials a dead run left running in the
    run folder's own storage (no other process holds it: nothing waits for a heartbeat) are
    failed and queued again, and so are the interrupted ones (Ctrl-C: not a failure of their
    candidates), once."""
    if cfg.storage is None or not is_rdb(cfg.storage_url()):
        orphans = fail_orphans(study)
        if orphans and not quiet:
            print(
                f"trials {orphans} were left running by a dead process: failed, queued again",
                file=sys.stderr,
            )
    lost = requeue_lost(study)
    if lost and not quiet:
        print(f"trials {lost} were interrupted: queued again", file=sys.stderr)


def verify_front(
    cfg: SearchConfig,
    study: optuna.Study,
    *,
    quiet: bool = False,
    cache: ResultCache | None = None,
) -> list:
    """The end of a search: the race at the target (``search.race``, run by
    ``search.racing``): the front, the candidates within reach of its best reading and the
    seed networks under the cap, trained again at the target with new seeds (each stored
    with its weights, so an interrupted race continues on ``--resume``) until the answer
    under each cap and its verdict against the seed networks are clear, over the search's
    processes and within its time budget. Seeds whose training fails are recorded as failed
    while the rest go on; then ``VerifyFailed`` says which. Returns the race's records."""
    if cfg.verify_seeds < 1:
        return []
    target = cfg.schedule.target.index
    df = trials_frame(study.get_trials(deepcopy=False))
    front = pareto_front(df, cap=cfg.budget, rung=target)
    if front.empty:
        if not quiet:
            print(empty_front_line(cfg, finished(study)), file=sys.stderr)
        return []
    # a seed that diverged in an earlier verification (a resumed search) is a kept result
    earlier = {k: {f.seed for f in v.failed} for k, v in stored_results(study).items()}
    threads = _threads_per_worker(cfg.workers) if cfg.workers > 1 else None
    view = run_race(cfg, study, quiet=quiet, cache=cache, threads=threads)
    results = [v for v in view.records.values() if v is not None]
    for v in results:  # the seeds that failed here, in this process or a helper
        v.failed_now = [f.seed for f in v.failed if f.seed not in earlier.get(v.store_key, ())]
    failed = failure_message(results)
    if failed:
        raise VerifyFailed(failed)
    return results


def _threads_per_worker(workers: int) -> int:
    return max(1, usable_cores() // workers)


def _spawn_workers(
    cfg: SearchConfig, cache: ResultCache | None = None, *, trials_so_far: int = 0
) -> list[subprocess.Popen]:
    """cfg.workers - 1 more processes working on the same study (this one is the first),
    sharing its results cache: helpers (``search.processes``) that end with this process,
    each told its index and the trials the study held at the start, which seed its sampler
    (``helper_seed``)."""
    threads = _threads_per_worker(cfg.workers)
    torch.set_num_threads(threads)
    env = helper_env(cache, threads=threads)
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
        "--device",
        cfg.device,
        "--quiet",
    ]
    if cfg.data.data_dir:
        cmd += ["--data-dir", cfg.data.data_dir]
    return [
        start_helper(
            [*cmd, "--helper-index", str(k), "--helper-trials-before", str(trials_so_far)],
            env=env,
        )
        for k in range(1, cfg.workers)
    ]


def run_worker(
    storage: str,
    study_name: str,
    *,
    out: Path | str,
    device: str | None = None,
    data_dir: str | None = None,
    quiet: bool = False,
    cache: ResultCache | None = None,
    helper_index: int | None = None,
    trials_before: int = 0,
) -> optuna.Study:
    """Join an existing study (e.g. on PostgreSQL) from this machine and work on it until the
    study has its trial count. Weights of the trials trained here go to ``out``; ``cache``:
    finished trainings shared with other searches on this machine. ``helper_index``: this is
    that helper process of a search (``_spawn_workers``), started when the study held
    ``trials_before`` trials; its sampler seed follows from them (``helper_seed``), where a
    worker started on its own seeds from its host and pid."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    store = open_storage(storage)
    attrs = _study_attrs(store, study_name)
    if attrs is None:
        raise SearchError(f"no study named {study_name!r} in {storage}")
    stored = attrs.get(CONFIG_ATTR)
    if not stored:
        raise SearchError(f"study {study_name!r} was not made by budgetnas search (no config)")
    cfg = SearchConfig.from_dict(stored)
    cfg = replace(cfg, out=str(Path(out).resolve()), storage=storage, study_name=study_name)
    cfg = cfg.resumed(
        **{k: v for k, v in {"device": device, "data_dir": data_dir}.items() if v is not None}
    )
    _check_fingerprint(cfg, attrs, f"this worker's reading of study {study_name!r}")
    device_, data = _prepare(cfg)
    _check_digest(cfg, attrs, data)
    Path(out).mkdir(parents=True, exist_ok=True)
    if not (Path(out) / CONFIG_FILE).exists():  # a helper process of a local run shares it
        (Path(out) / CONFIG_FILE).write_text(cfg.to_json())
    store = open_storage(storage, heartbeat=cfg.heartbeat)
    # each worker samples with its own seed, or workers would propose the same candidates
    if helper_index is not None:
        seed = helper_seed(cfg.seed, helper_index, trials_before)
    else:
        so_far = len(optuna.load_study(study_name=study_name, storage=store).trials)
        seed = sampler_seed(cfg.seed, so_far, f"{socket.gethostname()}:{os.getpid()}")
    study = _load(cfg, store, seed)
    cfg.check_references(study.get_trials(deepcopy=False))
    _drive(cfg, study, device_, data, quiet=quiet, cache=cache)
    return study


def _time_budget(cfg: SearchConfig, study: optuna.Study) -> TimeBudget | None:
    """The search's time budget: its deadline is on the study (set by the process that
    started or resumed the search), so helper processes and workers keep the same one."""
    deadline = study.user_attrs.get(DEADLINE_ATTR)
    if deadline is None:
        return None
    # per reference network (a study made before they were: one weight and share for all)
    weight = study.user_attrs.get(REFERENCE_WEIGHT_ATTR) or 1.0
    pending = study.user_attrs.get(REFERENCE_PENDING_ATTR)
    pending = 1.0 if pending is None else pending
    return TimeBudget(
        float(deadline),
        plan(cfg, reference_weight=weight, reference_pending=pending),
        workers=cfg.workers,
        overhead_s=float(study.user_attrs.get(OVERHEAD_ATTR) or 0.0),
    )


def plan(
    cfg: SearchConfig,
    *,
    reference_weight: float | dict[str, float] = 1.0,
    reference_pending: float | dict[str, float] = 1.0,
) -> Plan:
    """The work model of a search: its schedule, final verification and references
    (``reference_weight``: their image-epoch's cost in a candidate's, for a time budget;
    ``reference_pending``: the share of their verification the results cache does not hold)."""
    return Plan(
        cfg.schedule,
        verify_seeds=cfg.verify_seeds,
        references_at_target=len(cfg.reference_specs()),
        reference_seeds=cfg.seeds_of_references,
        reference_weight=reference_weight,
        reference_pending=reference_pending,
    )


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _notes(cfg: SearchConfig) -> list[str]:
    """What a user should know at the start: fewer rungs than the default and why, how the
    test set is chosen, and when no seed network fits the data (no yardsticks then)."""
    notes = []
    rungs, why = auto_rungs(
        epochs=cfg.recipe.epochs,
        images=cfg.data.train_images,
        eta=cfg.eta,
        pruner=cfg.pruner,
        batch=cfg.recipe.batch_size if cfg.min_rung_steps else None,
    )
    if why is not None and cfg.rungs == rungs:
        what = "every candidate at the target" if rungs == 1 else f"{rungs} rungs"
        notes.append(f"note: {why}: {what} (--rungs {rungs})")
    low = cfg.schedule.rungs[0]
    steps = rung_steps(low.epochs, low.images, cfg.recipe.batch_size)
    if len(cfg.schedule.rungs) > 1 and steps < MIN_RUNG_STEPS:  # --rungs chosen by the user
        notes.append(
            f"note: rung 0 ({low.label()}) is {steps} optimizer steps, fewer than the "
            f"{MIN_RUNG_STEPS} it takes candidates to leave chance: its ranking is a lottery "
            "(leave --rungs out for rungs that rank)"
        )
    if cfg.data.test_note:
        notes.append(f"note: {cfg.data.test_note}")
    if cfg.references and not cfg.reference_specs():
        space = cfg.space_config
        notes.append(
            f"note: no seed network takes {space.in_channels}x{space.input_size}x"
            f"{space.input_size} images with {space.num_classes} classes under the cap: no "
            "reference networks in this search"
        )
    return notes


def _running(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))


def _prepare(cfg: SearchConfig) -> tuple[torch.device, TrainVal]:
    device = resolve_device(cfg.device)
    return device, attach_teacher(cfg.data.load(device), cfg.recipe, cfg.out)


def _drive(
    cfg: SearchConfig,
    study: optuna.Study,
    device: torch.device,
    data: TrainVal,
    *,
    quiet: bool,
    cache: ResultCache | None = None,
    notes: list[str] | None = None,
) -> Progress | None:
    """Run this process's trials until the schedule is done; returns its progress display
    (None when there was nothing left to do)."""
    done = finished(study)
    budget = _time_budget(cfg, study)
    planner = budget or TimeBudget(math.inf, plan(cfg), workers=cfg.workers)

    def remaining(trials: list[FrozenTrial]) -> float | None:
        if budget is not None:
            return max(0.0, budget.deadline - time.time())
        new = max(0, cfg.trials - sum(1 for t in trials if rung0_used(t)))
        if cfg.budget_epochs:  # sampling stops where the budget does
            new = 0
        return planner.remaining(trials, extra=new)

    progress = Progress(
        total=cfg.trials,
        done=done,
        timeout=cfg.timeout,
        quiet=quiet,
        rungs=cfg.rungs,
        remaining=remaining,
        before=[t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()],
    )
    amounts = []
    if cfg.budget_time:
        amounts.append(f"{_clock(cfg.budget_time)} of search")
    if cfg.budget_epochs:
        amounts.append(f"compute of {cfg.budget_epochs:g} trainings at the target")
    if cfg.trials < UNLIMITED or not amounts:
        amounts.append(f"{cfg.trials} candidates" + (" at most" if amounts else ""))
    amount = ", ".join(amounts)
    info = cfg.data.info
    shape = f"{info.in_channels}x{info.image_size}x{info.image_size}, {info.num_classes} classes"
    progress.header(
        f"budgetnas: cap {cfg.budget:,} params ({format_params(cfg.budget)}), "
        f"{info.name} ({shape}; {len(data.train):,} train / {len(data.val):,} val), "
        f"{amount}, {cfg.schedule.label()}, on {device}"
        + (f" in {cfg.recipe.precision}" if cfg.recipe.precision != "fp32" else "")
        + (f" ({cfg.workers} trial processes)" if cfg.workers > 1 else "")
        + (f"; resuming after {done} candidates" if done else ""),
        notes=(_notes(cfg) + list(notes or ())) if not done else [],
    )
    # Trials run until cfg.trials sampled trials have finished (complete or pruned) in the
    # whole study, over every process: a failed trial, a candidate rejected before training or
    # a reference network does not use up a slot; the guards bound failures and rejections.
    guard, rejections = FailureGuard(), RejectionGuard(REJECTIONS_IN_A_ROW)
    schedule = ScheduleGuard(cfg, budget)
    if schedule.job(study).kind == "done":
        return None
    study.optimize(
        Objective(cfg, data, device, progress, sampling_open=schedule.sampling_open, cache=cache),
        n_trials=None,
        timeout=cfg.timeout,
        callbacks=[progress, guard, rejections, schedule],
        catch=(Exception,),
    )
    if guard.tripped:
        raise guard.error()
    if schedule.stopped and not quiet:
        print(f"stopped: {schedule.stopped}", file=sys.stderr)
    if rejections.tripped:
        raise rejections.error()
    return progress
