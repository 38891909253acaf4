"""Optuna storages: SQLite (default), any RDB URL (PostgreSQL for several machines), or a
journal file (several worker processes on one machine, no database locks).

RDB storages get Optuna's heartbeat, so a trial whose process died is detected and retried.
A run folder's own storage (a journal file, which has no heartbeat, or the default SQLite file)
is owned by the processes of that run, and ``fail_orphans`` hands the trials a dead run left
RUNNING back to the queue at once on ``--resume``; ``requeue_lost`` queues the interrupted
ones (Ctrl-C) again.
"""

from __future__ import annotations

import inspect
import time
import warnings
from typing import Any

import optuna
from optuna.trial import TrialState

from budgetnas.search.errors import SearchError

JOURNAL_PREFIX = "journal:///"


RDB_SCHEMES = ("sqlite", "postgresql", "mysql")
SCHEMA_RACE_RETRIES = 5  # attempts after a lost race to create a new SQLite study
# What a queued copy of a trial whose process died keeps (the heartbeat retry keeps every
# attribute): its cap of the ladder, its reference network, its fidelity rung, the
# promotion it is and its assigned size (search.sizing)
QUEUED_ATTRS = (
    "cap",
    "reference",
    "rung",
    "promoted_from",
    "candidate",
    "size_slot",
    "size_fraction",
)


def _retry_callback() -> object:
    cls = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return (cls or optuna.storages.RetryFailedTrialCallback)(max_retry=2)


def open_storage(url: str, *, heartbeat: int = 30) -> optuna.storages.BaseStorage:
    """An Optuna storage for ``url``; RDB storages (SQLite, PostgreSQL, MySQL) get a heartbeat.

    A trial whose process died (kill -9, a reboot) stops beating; ``heartbeat * 2`` seconds
    later the next trial start marks it failed and re-queues its candidate once more.
    """
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    try:
        if url.startswith(JOURNAL_PREFIX):
            path = "/" + url[len(JOURNAL_PREFIX) :].lstrip("/")
            backend = optuna.storages.journal.JournalFileBackend(path)
            return optuna.storages.JournalStorage(backend)
        if scheme not in RDB_SCHEMES:
            return optuna.storages.get_storage(url)
        kwargs: dict[str, Any] = {"heartbeat_interval": heartbeat, "grace_period": 2 * heartbeat}
        params = inspect.signature(optuna.storages.RDBStorage.__init__).parameters
        name = (
            "heartbeat_stale_trial_callback"
            if "heartbeat_stale_trial_callback" in params
            else "failed_trial_callback"
        )
        kwargs[name] = _retry_callback()
        engine = (
            {"connect_args": {"timeout": 60}} if scheme == "sqlite" else {"pool_pre_ping": True}
        )
        for attempt in range(SCHEMA_RACE_RETRIES + 1):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    warnings.simplefilter("ignore", FutureWarning)
                    return optuna.storages.RDBStorage(url, engine_kwargs=engine, **kwargs)
            except Exception as err:
                # processes opening a new database at once all create its tables; the losers
                # fail, and find the tables there a moment later
                if attempt == SCHEMA_RACE_RETRIES or scheme != "sqlite" or not _schema_race(err):
                    raise
                time.sleep(0.2 * (attempt + 1))
    except Exception as err:  # SQLAlchemy's and Optuna's errors are many; all mean "bad URL"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SearchError(f"cannot open storage {url!r}: {first}") from None


def _schema_race(err: Exception) -> bool:
    """Whether ``err`` is a lost race to create a new SQLite study's tables or its first rows
    (a lock is not: SQLite already waited its busy timeout for it)."""
    text = str(err)
    return "already exists" in text or "UNIQUE constraint failed" in text


def is_rdb(url: str) -> bool:
    return url.split(":", 1)[0].split("+", 1)[0] in RDB_SCHEMES


def journal_url(path) -> str:
    return JOURNAL_PREFIX + str(path).lstrip("/")


def fail_orphans(study: optuna.Study) -> list[int]:
    """Mark RUNNING trials failed and queue their candidates again; returns their numbers.

    Only when no other process works on the study (``--resume`` of a run folder's own
    storage: a journal file has no heartbeat, and a SQLite file's dead trial need not wait
    for it).
    """
    numbers = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_user_attr(t._trial_id, "error", "its process died")
        study._storage.set_trial_user_attr(t._trial_id, "interrupted", "its process died")
        study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        _queue_copy(study, t)
        numbers.append(t.number)
    return numbers


def requeue_lost(study: optuna.Study) -> list[int]:
    """Queue once more the searched trials that were lost (``schedule.is_lost``: interrupted,
    or their process died) and that nothing trains again yet: no queued copy retries them,
    and, for a promotion, no other trial holds it. Returns their numbers. A trial that failed
    on its own is not retried; reference networks are queued again by the driver."""
    from budgetnas.search.schedule.trials import claims, is_lost, is_searched, promoted_from

    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", ())}
    held = claims(trials)
    numbers = []
    for t in trials:
        if not (is_lost(t) and is_searched(t)) or t.number in retried:
            continue
        if "rung" not in t.user_attrs:  # lost before it said what it is: it holds nothing
            continue
        source = promoted_from(t)
        if source is not None:
            if source in held:
                continue
            held[source] = int(t.user_attrs.get("rung") or 0)
        _queue_copy(study, t)
        numbers.append(t.number)
    return numbers


def _queue_copy(study: optuna.Study, trial) -> None:
    """Queue ``trial``'s candidate again, as the heartbeat's retry does (its parameters, the
    attributes in ``QUEUED_ATTRS``, and the retry history that names the trial)."""
    kept = {k: trial.user_attrs[k] for k in QUEUED_ATTRS if k in trial.user_attrs}
    history = [*trial.system_attrs.get("retry_history", ()), trial.number]
    system = {
        "fixed_params": trial.params,
        "failed_trial": trial.system_attrs.get("failed_trial", trial.number),
        "retry_history": history,
    }
    study.add_trial(
        optuna.trial.create_trial(state=TrialState.WAITING, system_attrs=system, user_attrs=kept)
    )
