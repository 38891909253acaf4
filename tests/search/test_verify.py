"""Budget ladder, duplicate reuse, recipe search and verify, on synthetic data."""

from __future__ import annotations

import optuna
import pytest
from typer.testing import CliRunner

from budgetnas.search.cli import app
from budgetnas.search.run import SearchConfig, open_run, run_search
from budgetnas.search.verify import ladder_rows, stored_results, verify_run

runner = CliRunner()


def _cfg(root, out, **kw):
    base = dict(
        budget=5000,
        out=str(out),
        trials=4,
        epochs=1,
        batch_size=50,
        train_subset=300,
        val_size=100,
        data_dir=str(root),
        device="cpu",
        pruner="none",
    )
    base.update(kw)
    return SearchConfig(**base)


@pytest.fixture(scope="module")
def ladder_run(tmp_path_factory, synthetic_root):
    out = tmp_path_factory.mktemp("ladder") / "run"
    run_search(_cfg(synthetic_root, out, budget=5000, ladder=(2000, 5000)), quiet=True)
    return out


def test_ladder_spreads_trials_over_the_caps(ladder_run):
    cfg, study = open_run(ladder_run)
    assert cfg.caps == (2000, 5000)
    caps = [t.user_attrs["cap"] for t in study.trials]
    assert caps == [2000, 5000, 2000, 5000]
    for t in study.trials:
        if "spec" in t.user_attrs:
            assert t.user_attrs["params"] <= t.user_attrs["cap"]


def test_duplicate_candidate_reuses_the_result(ladder_run, synthetic_root):
    cfg, study = open_run(ladder_run)
    first = next(t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE)
    # the same suggestions (and trial number parity, hence the same cap) give the same spec
    study.enqueue_trial(first.params)
    study.enqueue_trial(first.params)
    runner_result = runner.invoke(app, ["search", "--resume", str(ladder_run), "--trials", "6"])
    assert runner_result.exit_code == 0, runner_result.stderr
    _, study = open_run(ladder_run)
    again = [t for t in study.trials[4:] if t.user_attrs.get("cap") == first.user_attrs["cap"]]
    assert len(again) == 1
    dup = again[0]
    assert dup.user_attrs["duplicate_of"] == first.number
    assert dup.user_attrs["key"] == first.user_attrs["key"]
    assert dup.value == first.value and dup.user_attrs["train_time_s"] == 0.0
    assert dup.user_attrs["weights"] == first.user_attrs["weights"]
    assert "1 reused" in runner_result.stderr


def test_verify_stores_results_and_fills_the_ladder(ladder_run, synthetic_root):
    results = verify_run(ladder_run, top=2, seeds=2, device="cpu", train_subset=200)
    assert len(results) == 2
    for v in results:
        assert [r.seed for r in v.runs] == [0, 1]
        accs = [r.test_acc for r in v.runs]
        assert v.test_mean == pytest.approx(sum(accs) / 2)
        assert v.test_min == min(accs)
        assert v.test_std >= 0
    _, study = open_run(ladder_run)
    stored = stored_results(study)
    assert set(stored) == {v.key for v in results}
    rows = ladder_rows(stored, (2000, 5000))
    assert all(v.params <= cap for cap, v in rows)
    assert rows and rows[-1][0] == 5000


def test_verify_cli_zoo_and_report(ladder_run):
    result = runner.invoke(
        app,
        [
            "verify",
            str(ladder_run),
            "--zoo",
            "001",
            "--seeds",
            "2",
            "--train-subset",
            "200",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.stderr
    assert "zoo-001" in result.stdout and "9,798" in result.stdout
    page = (ladder_run / "report.html").read_text()
    assert "Verified architectures" in page and "zoo-001" in page
    bad = runner.invoke(app, ["verify", str(ladder_run), "--zoo", "777"])
    assert bad.exit_code == 1 and "no zoo entry '777'" in bad.stderr


def test_search_recipe_samples_and_stores_the_recipe(tmp_path, synthetic_root):
    study = run_search(
        _cfg(synthetic_root, tmp_path / "r", trials=3, search_recipe=True), quiet=True
    )
    recipes = [t.user_attrs["recipe"] for t in study.trials]
    assert len({r["lr"] for r in recipes}) == 3
    for t in study.trials:
        assert {"lr", "label_smoothing", "augment", "dropout"} <= set(t.params)
        assert t.user_attrs["recipe"]["epochs"] == 1  # the epoch budget stays the user's
