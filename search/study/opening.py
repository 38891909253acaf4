"""The study of a run: created, resumed or refused, before anything trains.

A new search never joins an existing study; a resumed one only continues its own, with the
same fingerprint (``SearchConfig.fingerprint``: everything that defines a result) and the same
data (its digest). A worker joining a study checks both the same way. Each process samples with
its own seed (``sampler_seed``, ``helper_seed``), so processes do not propose the same
candidates.
"""

from __future__ import annotations

import hashlib
import sys
import warnings

import optuna
from optuna.trial import TrialState

from budgetnas.search.errors import SearchError
from budgetnas.search.sampling.pruners import make_pruner
from budgetnas.search.sampling.samplers import (
    directions,
    is_multi_objective,
    make_sampler,
    metric_names,
)
from budgetnas.search.schedule.trials import rung_of
from budgetnas.search.study.config import SearchConfig, differences
from budgetnas.search.study.runs import (
    DIGEST_ATTR,
    FINGERPRINT_ATTR,
)
from budgetnas.search.study.storage import fail_orphans, is_rdb, requeue_lost
from budgetnas.trainers.data import TrainVal


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


def study_pruner(cfg: SearchConfig) -> optuna.pruners.BasePruner:
    """Optuna's pruner for a single-objective study; a multi-objective one prunes inside the
    objective (Optuna's pruners do not support several objectives)."""
    return (
        optuna.pruners.NopPruner() if is_multi_objective(cfg.sampler) else make_pruner(cfg.pruner)
    )


def load_study(cfg: SearchConfig, storage, seed: int) -> optuna.Study:
    study = optuna.load_study(
        study_name=cfg.study_name,
        storage=storage,
        sampler=make_sampler(cfg.sampler, seed, cfg.sizing),
        pruner=study_pruner(cfg),
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


def study_attrs(storage: optuna.storages.BaseStorage, name: str) -> dict | None:
    """The user attributes of study ``name`` in ``storage``, or None if there is none."""
    try:
        return storage.get_study_user_attrs(storage.get_study_id_from_name(name))
    except KeyError:
        return None


def refuse_existing(cfg: SearchConfig, attrs: dict) -> SearchError:
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


def check_fingerprint(cfg: SearchConfig, attrs: dict, what: str) -> None:
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


def check_digest(cfg: SearchConfig, attrs: dict, data: TrainVal) -> None:
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


def name_metrics(study: optuna.Study, sampler: str) -> None:
    """Name a new study's objectives, for optuna-dashboard and Optuna's plots (Optuna 3.2
    and later; an earlier Optuna leaves them unnamed)."""
    name = getattr(study, "set_metric_names", None)
    if name is None:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        name(metric_names(sampler))


def take_back(cfg: SearchConfig, study: optuna.Study, *, quiet: bool) -> None:
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
