"""Failed trials: they do not use up --trials, they print their reason, and failures that keep
coming stop the search with one line. And the cap a trial is checked against is its own rung."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from budgetnas.search.cli import app
from budgetnas.search.pipeline import run_search
from budgetnas.search.sampling import objective
from budgetnas.search.sampling.objective import assign_cap
from budgetnas.search.study.guards import FAILURES_IN_A_ROW
from budgetnas.search.study.runs import open_run
from budgetnas.space.count import count_params
from budgetnas.space.spec import ArchSpec, Conv, Head, Transition
from budgetnas.trainers.train import TrainingError
from tests.helpers import cli_error, quick_config, search_args

runner = CliRunner()


def _failing_train(monkeypatch, fail_calls):
    """objective.train, failing on the calls (0-based) in ``fail_calls`` (all: None)."""
    real = objective.train
    calls = []

    def train(*args, **kwargs):
        calls.append(len(calls))
        if fail_calls is None or calls[-1] in fail_calls:
            raise TrainingError("training loss became nan in epoch 1")
        return real(*args, **kwargs)

    monkeypatch.setattr(objective, "train", train)
    return calls


def test_failed_trials_do_not_use_up_the_trial_count(tmp_path, synthetic_root, monkeypatch):
    calls = _failing_train(monkeypatch, fail_calls={1, 2})
    run = tmp_path / "run"
    result = runner.invoke(app, search_args(synthetic_root, run, "--trials", "3"))
    assert result.exit_code == 0, result.stderr
    _, study = open_run(run)
    states = [t.state for t in study.trials]
    assert states.count(TrialState.FAIL) == 2
    assert sum(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states) == 3
    assert len(calls) == 5
    # the reason is on the failed trial's progress line, and no traceback anywhere
    failed_lines = [line for line in result.stderr.splitlines() if " failed " in line]
    assert len(failed_lines) == 2
    assert all("TrainingError: training loss became nan" in line for line in failed_lines)
    assert "Traceback" not in result.stderr
    assert "2 failed" in result.stderr


def test_failures_in_a_row_stop_the_search_with_one_line(tmp_path, synthetic_root, monkeypatch):
    calls = _failing_train(monkeypatch, fail_calls=None)
    run = tmp_path / "run"
    result = runner.invoke(app, search_args(synthetic_root, run, "--trials", "3", "--quiet"))
    line = cli_error(result)
    numbers = ", ".join(str(n) for n in range(FAILURES_IN_A_ROW))
    assert line == (
        f"error: {FAILURES_IN_A_ROW} trials failed in a row (trials {numbers}); the last: "
        "TrainingError: training loss became nan in epoch 1. Finished trials are kept: fix "
        "the cause, then continue with --resume"
    )
    assert len(calls) == FAILURES_IN_A_ROW
    _, study = open_run(run)
    assert [t.state for t in study.trials] == [TrialState.FAIL] * FAILURES_IN_A_ROW
    assert (run / "report.html").is_file() and (run / "trials.csv").is_file()


def test_an_unexpected_error_is_the_trials_own(tmp_path, synthetic_root, monkeypatch):
    real = objective.train
    calls = []

    def train(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("cuDNN said no")
        return real(*args, **kwargs)

    monkeypatch.setattr(objective, "train", train)
    study = run_search(quick_config(synthetic_root, tmp_path / "run", trials=2), quiet=True)
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert len(failed) == 1
    assert failed[0].user_attrs["error"] == "RuntimeError: cuDNN said no"
    assert "Traceback" in failed[0].user_attrs["traceback"]  # kept for whoever debugs it
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) == 2


# ---- the cap a trial is held to is its own rung ------------------------------------------

MID = ArchSpec(blocks=(Conv(8), Transition(8), Conv(16), Conv(16)), head=Head())


def test_a_candidate_over_its_rung_is_never_trained(tmp_path, synthetic_root, monkeypatch):
    params = count_params(MID)
    assert 2000 < params <= 5000
    monkeypatch.setattr(objective, "sample_spec", lambda *a, **k: MID)
    trained = _failing_train(monkeypatch, fail_calls=set())  # counts calls, fails none
    cfg = quick_config(synthetic_root, tmp_path / "run", caps=(2000, 5000), trials=2)
    study = run_search(cfg, quiet=True)
    by_cap = {t.user_attrs["cap"]: t for t in study.trials}
    low, high = by_cap[2000], by_cap[5000]
    assert low.state == TrialState.PRUNED
    assert low.user_attrs["rejected"] == f"{params:,} parameters over the cap 2,000"
    assert "weights" not in low.user_attrs and "val_curve" not in low.user_attrs
    assert high.state == TrialState.COMPLETE and "weights" in high.user_attrs
    assert len(trained) == 1


def test_a_queued_trial_keeps_its_rung():
    study = optuna.create_study()
    for cap in (2000, 5000, 2000):  # rungs 2000: 2 trials, 5000: 1
        trial = study.ask()
        trial.set_user_attr("cap", cap)
        study.tell(trial, 0.5)
    assert assign_cap(study.ask(), (2000, 5000)) == 5000  # the emptier rung
    study.enqueue_trial({}, user_attrs={"cap": 2000})  # a retried trial of rung 2000
    assert assign_cap(study.ask(), (2000, 5000)) == 2000


@pytest.mark.parametrize("caps", [(5000,), (2000, 5000, 10_000)])
def test_rungs_fill_evenly(caps):
    study = optuna.create_study()
    got = []
    for _ in range(2 * len(caps)):
        trial = study.ask()
        got.append(assign_cap(trial, caps))
        study.tell(trial, 0.5)
    assert got == list(caps) * 2


def test_exporting_a_failed_trial_says_it_failed():
    from optuna.trial import create_trial

    from budgetnas.search.errors import SearchError
    from budgetnas.search.study.runs import pick_trial

    trials = []
    for number, state in enumerate([TrialState.COMPLETE, TrialState.FAIL, TrialState.RUNNING]):
        t = create_trial(state=state, values=[0.9] if state == TrialState.COMPLETE else None)
        t.number = number
        trials.append(t)
    with pytest.raises(SearchError) as err:
        pick_trial(trials, 1, cap=5000)
    assert str(err.value) == "trial 1 failed; only completed trials have weights"
    with pytest.raises(SearchError, match="^trial 2 is still running; only completed"):
        pick_trial(trials, 2, cap=5000)
