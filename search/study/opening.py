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
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from budgetnas.search.errors import SearchError
from budgetnas.search.sampling.pruners import make_pruner
from budgetnas.search.sampling.samplers import (
    directions,
    is_multi_objective,
    make_sampler,
    metric_names,
)
from budgetnas.search.schedule.trials import rung_of
from budgetnas.search.study.config import SearchConfig
from budgetnas.search.study.runs import (
    DIGEST_ATTR,
    FINGERPRINT_ATTR,
)
from budgetnas.search.study.storage import fail_orphans, is_rdb, requeue_lost
from budgetnas.space.spec import ArchSpec
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


def same_network(stored: str | None, spec: ArchSpec) -> bool:
    """Whether the spec JSON ``stored`` (on a trial, or on a verify record) is the network
    ``spec``: the same architecture, whatever input normalisation each carries. A zoo
    network's identity is its spec, not its key: an entry that changes keeps its key."""
    if stored is None:
        return False
    try:
        other = ArchSpec.from_json(stored)
    except (ValueError, TypeError, KeyError):  # SpecError is a ValueError
        return False
    return replace(other, norm=spec.norm) == spec


def changed_reference(
    trials: Iterable[FrozenTrial], key: str, spec: ArchSpec
) -> FrozenTrial | None:
    """The first trial that holds zoo network ``key`` as a reference but stores another
    network than ``spec`` (None: every one holds ``spec``, or none trained it yet)."""
    for t in trials:
        stored = t.user_attrs.get("spec")
        if t.user_attrs.get("reference") == key and stored and not same_network(stored, spec):
            return t
    return None


def differences(stored: dict[str, Any], ours: dict[str, Any]) -> list[str]:
    """'recipe.epochs: 15 there, 3 here' for every leaf that differs between two fingerprints."""
    a, b = _flatten(stored), _flatten(ours)  # a setting one side lacks reads as None
    return [
        f"{key}: {a.get(key)} there, {b.get(key)} here"
        for key in sorted(set(a) | set(b))
        if a.get(key) != b.get(key)
    ]


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            flat.update(_flatten(v, key + "."))
        else:
            flat[key] = tuple(v) if isinstance(v, list) else v
    return flat


def check_references(cfg: SearchConfig, trials: Iterable[FrozenTrial]) -> None:
    """Refuse, in one line, a study whose reference trials hold another network under a
    zoo key than the zoo holds there now (a seed network changed since the run trained
    it): resumed, the run would train the new network under the old one's name and mix
    the two in one yardstick."""
    for key, (spec, _) in cfg.reference_specs().items():
        trial = changed_reference(trials, key, spec)
        if trial is not None:
            raise SearchError(
                f"seed {key} has changed since this run trained it: trial {trial.number} "
                f"holds another network under that key than seed {key} is now, and the "
                "two cannot be mixed in one yardstick; start a new search, or continue "
                "this one with the budgetnas version that made it"
            )
