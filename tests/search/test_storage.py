"""Opening the study storage: processes that open a new SQLite study at the same moment (the
workers of one search, a worker started beside its search) all get it."""

from __future__ import annotations

import multiprocessing as mp

import optuna
import pytest

from budgetnas.search.study.storage import open_storage


def _open(url: str, barrier, results) -> None:
    barrier.wait()
    try:
        open_storage(url)
        results.put("ok")
    except Exception as err:  # reported to the test, whatever it is
        results.put(str(err))


@pytest.mark.slow
def test_processes_opening_a_new_sqlite_study_at_once_all_get_it(tmp_path):
    ctx = mp.get_context("fork")
    failures = []
    for round_ in range(6):  # before the retry: about one open in five lost the race
        url = f"sqlite:///{tmp_path / f'study{round_}.db'}"
        barrier, results = ctx.Barrier(4), ctx.Queue()
        procs = [ctx.Process(target=_open, args=(url, barrier, results)) for _ in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        failures += [r for r in (results.get(timeout=5) for _ in procs) if r != "ok"]
        assert optuna.get_all_study_summaries(storage=url) == []  # a usable, empty storage
    assert failures == []


def _study_with(*trials):
    """An in-memory study holding ``trials``: (state, user attributes) pairs."""
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    study = optuna.create_study(directions=["maximize", "minimize"])
    for state, attrs in trials:
        done = state == TrialState.COMPLETE
        study.add_trial(
            create_trial(
                state=state,
                values=[0.9, float(attrs.get("params", 1000))] if done else None,
                params={"x": 0.5},
                distributions={"x": FloatDistribution(0, 1)},
                user_attrs=attrs,
            )
        )
    return study


def test_an_interrupted_promotion_is_queued_again_once_on_resume():
    from optuna.trial import TrialState

    from budgetnas.search.schedule.promotion import Schedule
    from budgetnas.search.schedule.rungs import plan_rungs
    from budgetnas.search.study.storage import requeue_lost

    C, F = TrialState.COMPLETE, TrialState.FAIL
    promotion = {"rung": 1, "promoted_from": 0, "candidate": 0, "cap": 5000, "params": 4000}
    study = _study_with(
        *[(C, {"rung": 0, "cap": 5000, "params": 4000 + n}) for n in range(3)],
        (F, {**promotion, "interrupted": "interrupted (Ctrl-C)"}),  # #3
        (F, {**promotion, "promoted_from": 1, "error": "TrainingError: nan"}),  # its own fault
        (F, {"rung": 0, "cap": 5000, "error": "TrainingError: nan"}),  # ditto
    )
    assert requeue_lost(study) == [3]
    copy = study.trials[-1]
    assert copy.state == TrialState.WAITING and copy.system_attrs["failed_trial"] == 3
    assert {k: copy.user_attrs[k] for k in promotion if k != "params"} == {
        k: v for k, v in promotion.items() if k != "params"
    }
    assert requeue_lost(study) == []  # once: its copy holds the promotion now
    # the schedule runs the copy first, then does not promote #0 again
    schedule = Schedule(plan_rungs(epochs=3, images=3000, rungs=2, eta=3), eta=3)
    assert schedule.next_job(study.trials, trials_wanted=3).kind == "queued"


def test_a_retried_trial_is_not_queued_again():
    from optuna.trial import TrialState

    from budgetnas.search.study.storage import requeue_lost

    study = _study_with((TrialState.FAIL, {"rung": 0, "cap": 5000}))  # the heartbeat failed it
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.WAITING,
            user_attrs={"rung": 0, "cap": 5000},
            system_attrs={"failed_trial": 0, "retry_history": [0]},
        )
    )
    assert requeue_lost(study) == []
