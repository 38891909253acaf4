"""The driver: load the data once, open the study, run trials until enough have finished,
and stop on a time limit or on failures that keep coming.

``search_trials`` runs (or continues) the trials of a run folder, ``budgetnas.search.pipeline``
calls it and then the race; ``run_worker`` joins a study made elsewhere (several machines on
one RDB storage, or the helper processes of ``--workers``).
"""

from __future__ import annotations

import math
import os
import socket
import sys
import time
from dataclasses import replace
from pathlib import Path

import optuna
import torch
from optuna.trial import FrozenTrial

from budgetnas.search.cache.store import ResultCache
from budgetnas.search.errors import SearchError
from budgetnas.search.sampling.objective import Objective
from budgetnas.search.sampling.samplers import (
    directions,
    make_sampler,
)
from budgetnas.search.schedule.budgets import END_MARGIN_S, TimeBudget
from budgetnas.search.schedule.trials import rung0_used
from budgetnas.search.schedule.yardsticks import (
    check_budget_fits,
    held_by_cache,
    pending_by_reference,
    plan_yardsticks,
    reference_weights,
    time_costs,
)
from budgetnas.search.study.at_once import optimize_at_once
from budgetnas.search.study.concurrency import joined, settle
from budgetnas.search.study.config import CONFIG_FILE, SearchConfig
from budgetnas.search.study.guards import (
    REJECTIONS_IN_A_ROW,
    FailureGuard,
    RejectionGuard,
    ScheduleGuard,
)
from budgetnas.search.study.header import header_line, start_notes
from budgetnas.search.study.opening import (
    check_digest,
    check_fingerprint,
    check_references,
    helper_seed,
    load_study,
    name_metrics,
    queue_references,
    refuse_existing,
    sampler_seed,
    study_attrs,
    study_pruner,
    take_back,
)
from budgetnas.search.study.processes import (
    RunLock,
    spawn_workers,
    supervised,
    threads_per_worker,
)
from budgetnas.search.study.progress import Progress
from budgetnas.search.study.runs import (
    CONFIG_ATTR,
    DIGEST_ATTR,
    FINGERPRINT_ATTR,
    candidates_trained,
)
from budgetnas.search.study.storage import open_storage
from budgetnas.search.study.teacher import attach_teacher, start_teacher
from budgetnas.search.study.timing import (
    DEADLINE_ATTR,
    OVERHEAD_ATTR,
    REFERENCE_PENDING_ATTR,
    REFERENCE_RATES_ATTR,
    REFERENCE_WEIGHT_ATTR,
    STARTED_ENV,
    plan,
    time_budget,
)
from budgetnas.trainers.data import TrainVal
from budgetnas.trainers.evaluate import resolve_device


def search_trials(
    cfg: SearchConfig,
    lock: RunLock,
    *,
    resume: bool,
    quiet: bool,
    cache: ResultCache | None,
) -> tuple[optuna.Study, bool]:
    """Open (or create, or refuse) the run's study and run its trials over ``cfg.workers``
    processes until the schedule is done, the time budget leaves only the race's time, or
    a guard stops them; returns the study and whether the race at the end is due (the
    schedule done, or the time budget's race due). ``lock``: the run folder's, taken once
    the folder exists (a resume takes it before anything is read)."""
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
    attrs = study_attrs(storage, cfg.study_name) if storage is not None else None
    if not resume and attrs is not None:
        raise refuse_existing(cfg, attrs)
    loading = time.time()
    device, data = _prepare(cfg)
    if not resume:  # --teacher: trained or loaded once, named in the recipe (fingerprinted)
        cfg, data = start_teacher(cfg, data, device=device, cache=cache, quiet=quiet)
    # what follows the trials: the race's helpers start and load the data, then the reports
    overhead = round(max(startup, 1.0) + (time.time() - loading) + END_MARGIN_S, 3)
    notes, weight, pending, rates = [], None, 1.0, None
    if not resume and cfg.budget_time:
        # the yardsticks' share of the time budget, before anything is trained or written
        costs = time_costs(cfg, data, device, threads=threads_per_worker(cfg.workers), cache=cache)
        if costs is not None:
            spent = time.time() - started
            check_budget_fits(cfg, costs, overhead=overhead + spent)
        if costs is not None and costs.references:
            cfg, note = plan_yardsticks(cfg, costs)
            notes += [note] if note else []
            weight = reference_weights(costs)
            pending = pending_by_reference(cfg, costs.references, costs.held)
            rates = costs.references
    out.mkdir(parents=True, exist_ok=True)
    lock.acquire()
    storage = storage or open_storage(cfg.storage_url(), heartbeat=cfg.heartbeat)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # failures: one progress line each
    so_far = 0  # trials in the study before this run of it
    if resume:
        attrs = study_attrs(storage, cfg.study_name)
        if attrs is None:
            raise SearchError(f"{out} holds no study named {cfg.study_name!r}")
        check_fingerprint(cfg, attrs, f"{out / CONFIG_FILE}")
        check_digest(cfg, attrs, data)
        so_far = len(optuna.load_study(study_name=cfg.study_name, storage=storage).trials)
        study = load_study(cfg, storage, sampler_seed(cfg.seed, so_far))
        check_references(cfg, study.get_trials(deepcopy=False))  # a seed network changed
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
                pruner=study_pruner(cfg),
            )
        except optuna.exceptions.DuplicatedStudyError:
            raise SearchError(f"study {cfg.study_name!r} was created meanwhile") from None
        study.set_user_attr(FINGERPRINT_ATTR, cfg.fingerprint())
        study.set_user_attr(DIGEST_ATTR, data.digest)
        if weight is not None:
            study.set_user_attr(REFERENCE_WEIGHT_ATTR, weight)
            study.set_user_attr(REFERENCE_PENDING_ATTR, pending)
            study.set_user_attr(REFERENCE_RATES_ATTR, rates)
        name_metrics(study, cfg.sampler)
    (out / CONFIG_FILE).write_text(cfg.to_json())
    study.set_user_attr(CONFIG_ATTR, cfg.to_dict())
    deadline = started + cfg.budget_time if cfg.budget_time else None
    study.set_user_attr(DEADLINE_ATTR, deadline)
    study.set_user_attr(OVERHEAD_ATTR, overhead)
    if resume:
        take_back(cfg, study, quiet=quiet)
    queue_references(cfg, study)
    concurrent, measured = settle(cfg, study, device, data)  # helpers read it from the study
    notes += measured
    threads = torch.get_num_threads()
    helpers = spawn_workers(cfg, cache, trials_so_far=so_far) if cfg.workers > 1 else []
    try:
        # the helpers end with this process: waited for, or stopped on Ctrl-C or an error
        with supervised(helpers, what="worker", quiet=quiet):
            progress = _drive(
                cfg,
                study,
                device,
                data,
                quiet=quiet,
                cache=cache,
                notes=notes,
                concurrent=concurrent,
            )
    finally:
        torch.set_num_threads(threads)  # the verification runs alone: every core again
    if progress is not None and helpers:
        progress.flush(study)  # the last trials of the other processes
    budget = time_budget(cfg, study)
    due = budget is not None and budget.race_due(study.get_trials(deepcopy=False), time.time())
    return study, due or ScheduleGuard(cfg, budget).job(study).kind == "done"


def run_worker(
    storage: str,
    study_name: str,
    *,
    out: Path | str,
    device: str | None = None,
    data_dir: str | None = None,
    quiet: bool = False,
    cache: ResultCache | None = None,
    concurrent: int | None = None,
    helper_index: int | None = None,
    trials_before: int = 0,
) -> optuna.Study:
    """Join an existing study (e.g. on PostgreSQL) from this machine and work on it until the
    study has its trial count. Weights of the trials trained here go to ``out``; ``cache``:
    finished trainings shared with other searches on this machine. ``helper_index``: this is
    that helper process of a search (``spawn_workers``), started when the study held
    ``trials_before`` trials; its sampler seed follows from them (``helper_seed``), where a
    worker started on its own seeds from its host and pid."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    store = open_storage(storage)
    attrs = study_attrs(store, study_name)
    if attrs is None:
        raise SearchError(f"no study named {study_name!r} in {storage}")
    stored = attrs.get(CONFIG_ATTR)
    if not stored:
        raise SearchError(f"study {study_name!r} was not made by budgetnas search (no config)")
    cfg = SearchConfig.from_dict(stored)
    cfg = replace(cfg, out=str(Path(out).resolve()), storage=storage, study_name=study_name)
    here = {"device": device, "data_dir": data_dir, "concurrent": concurrent}
    cfg = cfg.resumed(**{k: v for k, v in here.items() if v is not None})
    check_fingerprint(cfg, attrs, f"this worker's reading of study {study_name!r}")
    device_, data = _prepare(cfg)
    check_digest(cfg, attrs, data)
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
    study = load_study(cfg, store, seed)
    check_references(cfg, study.get_trials(deepcopy=False))
    _drive(cfg, study, device_, data, quiet=quiet, cache=cache, concurrent=joined(cfg, study))
    return study


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
    concurrent: int = 1,
) -> Progress | None:
    """Run this process's trials, ``concurrent`` trainings at once, until the schedule is
    done; returns its progress display (None when there was nothing left to do)."""
    done = candidates_trained(study)
    budget = time_budget(cfg, study)
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
    progress.header(
        header_line(cfg, data, device, done=done, concurrent=concurrent),
        notes=(start_notes(cfg) + list(notes or ())) if not done else [],
    )
    # Trials run until cfg.trials sampled trials have finished (complete or pruned) in the
    # whole study, over every process: a failed trial, a candidate rejected before training or
    # a reference network does not use up a slot; the guards bound failures and rejections.
    guard, rejections = FailureGuard(), RejectionGuard(REJECTIONS_IN_A_ROW)
    schedule = ScheduleGuard(cfg, budget)
    if schedule.job(study).kind == "done":
        return None
    objective = Objective(
        cfg, data, device, progress, sampling_open=schedule.sampling_open, cache=cache
    )
    if concurrent > 1:
        optimize_at_once(
            study,
            objective,
            concurrent=concurrent,
            callbacks=[progress, guard, rejections, schedule],
            schedule=schedule,
            timeout=cfg.timeout,
        )
    else:
        study.optimize(
            objective,
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
