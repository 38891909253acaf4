"""Verification that fails, and what is shown as verified: a verify seed whose training fails
is recorded and the rest go on (reports written, one line, exit code 1); only the search's own
recipe counts as its target; one seed has no spread."""

from __future__ import annotations

import statistics

import optuna
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from budgetnas.search.cli import app
from budgetnas.search.pipeline import run_search
from budgetnas.search.study.runs import open_run
from budgetnas.search.verification import retrain as verify_module
from budgetnas.search.verification.records import stored_results
from budgetnas.search.verification.retrain import verify_run
from budgetnas.trainers.train import TrainingError
from tests.helpers import quick_config

runner = CliRunner()
REAL_TRAIN = verify_module.train
NAN = "TrainingError: training loss became nan in epoch 1"


@pytest.fixture(scope="module")
def searched(tmp_path_factory, synthetic_root):
    out = tmp_path_factory.mktemp("verify-failed") / "run"
    run_search(quick_config(synthetic_root, out), quiet=True)
    return out


@pytest.fixture(autouse=True)
def _no_results_cache(monkeypatch):
    monkeypatch.setenv("BUDGETNAS_CACHE", "off")  # every verify seed here trains


def _failing(monkeypatch, seeds: set[int], error: Exception | None = None) -> list[int]:
    """verify's training, failing for the verify seeds in ``seeds``; returns the seeds trained."""
    trained: list[int] = []

    def train(spec, data, recipe, **kwargs):
        trained.append(recipe.seed)
        if recipe.seed in seeds:
            raise error or TrainingError("training loss became nan in epoch 1")
        return REAL_TRAIN(spec, data, recipe, **kwargs)

    monkeypatch.setattr(verify_module, "train", train)
    return trained


def _a_trial(run) -> int:
    _, study = open_run(run)
    return next(t.number for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE)


def test_a_failed_seed_is_recorded_and_the_other_seeds_go_on(searched, monkeypatch):
    number = _a_trial(searched)
    trained = _failing(monkeypatch, {3})
    args = dict(trials=[number], device="cpu", train_subset=150, lr=0.03)
    (first,) = verify_run(searched, seeds=2, **args)
    (item,) = verify_run(searched, seeds=3, **args)  # seeds 1 and 2 are stored already
    assert trained == [1, 2, 3]
    assert item.runs == first.runs and [r.seed for r in item.runs] == [1, 2]
    assert [(f.seed, f.error, f.diverged) for f in item.failed] == [(3, NAN, True)]
    stored = stored_results(open_run(searched)[1])[item.store_key]
    assert stored.runs == item.runs and stored.failed == item.failed  # seeds 1, 2 kept
    # the next seed goes on; a diverged seed diverges again: not trained again, still failed
    (more,) = verify_run(searched, seeds=4, **args)
    assert trained == [1, 2, 3, 4]
    assert [r.seed for r in more.runs] == [1, 2, 4] and more.failed == item.failed
    assert more.test_mean == pytest.approx(statistics.fmean(r.test_acc for r in more.runs))
    stored = stored_results(open_run(searched)[1])[item.store_key]
    assert stored.runs == more.runs and stored.failed == more.failed


def test_a_seed_out_of_device_memory_is_tried_again(searched, monkeypatch):
    number = _a_trial(searched)
    _failing(monkeypatch, {1}, torch.cuda.OutOfMemoryError("CUDA out of memory"))
    args = dict(trials=[number], seeds=1, device="cpu", train_subset=150, lr=0.04)
    (item,) = verify_run(searched, **args)
    assert item.runs == [] and [f.seed for f in item.failed] == [1]
    assert item.failed[0].error == "OutOfMemoryError: CUDA out of memory"
    trained = _failing(monkeypatch, set())
    (again,) = verify_run(searched, **args)
    assert trained == [1] and [r.seed for r in again.runs] == [1] and again.failed == []


def test_verify_cli_reports_failed_seeds_and_ends_with_one_line(searched, monkeypatch):
    number = _a_trial(searched)
    _failing(monkeypatch, {1})
    args = f"verify {searched} --trial {number} --seeds 2 --lr 0.06 --train-subset 120"
    result = runner.invoke(app, [*args.split(), "--device", "cpu"])
    assert result.exit_code == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == (
        f"error: 1 of 2 verify seeds failed (trial {number}: seed 1); the last: {NAN}. They "
        "count in no mean; the other results are stored and reported"
    )
    assert [line for line in lines if line.startswith("error:")] == [lines[-1]]
    assert "Traceback" not in result.stdout + result.stderr
    assert any(f"seed 1  failed: {NAN}" in line for line in lines)  # its verify line
    assert any(line.startswith("wrote ") for line in lines)  # the reports, before the line
    (row,) = [line for line in result.stdout.splitlines() if line.startswith(f"trial {number}")]
    assert "(1 seed)" in row and f"seed 1 failed ({NAN})" in row and "±" not in row
    page = (searched / "report.html").read_text()
    assert f"seed 1 failed ({NAN})" in page


def test_a_seed_that_diverged_before_fails_no_later_verify(searched, monkeypatch):
    """A diverged seed is a result, kept and not trained again; a later verify or --resume
    that fails nothing new exits 0, and says the seed failed earlier."""
    number = _a_trial(searched)
    _failing(monkeypatch, {1})
    args = [*f"verify {searched} --trial {number} --seeds 2 --lr 0.07 --train-subset 120".split()]
    first = runner.invoke(app, [*args, "--device", "cpu"])
    assert first.exit_code == 1, first.stdout + first.stderr
    trained = _failing(monkeypatch, set())
    again = runner.invoke(app, [*args, "--device", "cpu"])
    assert again.exit_code == 0, again.stdout + again.stderr
    assert trained == []  # seed 2 stored, seed 1 diverged: nothing to train
    lines = again.stderr.strip().splitlines()
    assert not [line for line in lines if line.startswith("error:")]
    assert any(f"seed 1  failed earlier: {NAN}" in line for line in lines)
    (row,) = [line for line in again.stdout.splitlines() if line.startswith(f"trial {number}")]
    assert f"seed 1 failed ({NAN})" in row  # still listed, in no mean


def test_only_the_searchs_own_recipe_counts_as_the_target(searched):
    """A verify with another --lr at the target's epochs and images is shown labelled with what
    differs, not as the target (neither in the report's target table nor in pareto.csv)."""
    from budgetnas.reports.front.frame import trials_frame
    from budgetnas.reports.front.pareto import pareto_front
    from budgetnas.reports.page.run import at_target, write_run_reports

    cfg, study = open_run(searched)
    front = pareto_front(trials_frame(study.get_trials()), cap=cfg.cap)  # pareto.csv's
    number = int(front["number"].iloc[0])
    target = cfg.schedule.target
    args = dict(trials=[number], seeds=1, device="cpu", train_subset=cfg.data.train_subset)
    (other,) = verify_run(searched, lr=0.02, **args)
    assert (other.fidelity.epochs, other.fidelity.train_images) == (target.epochs, target.images)
    cfg, study = open_run(searched)
    assert number not in at_target(cfg, study)["number"].tolist()
    write_run_reports(cfg, study)
    pareto = pd.read_csv(searched / "pareto.csv")
    assert pareto["verified_seeds"].isna().all()
    page = (searched / "report.html").read_text()
    assert f"lr 0.02 (target {cfg.recipe.lr:g})" in page

    (own,) = verify_run(searched, **args)  # the search's own recipe: the target
    cfg, study = open_run(searched)
    rows = at_target(cfg, study).set_index("number")
    assert rows.loc[number, "seeds"] == 1 and rows.loc[number, "val_mean"] == own.val_mean
    write_run_reports(cfg, study)
    pareto = pd.read_csv(searched / "pareto.csv")
    (row,) = pareto[pareto["verified_seeds"].notna()].itertuples()
    assert row.number == number and row.verified_val_mean == pytest.approx(own.val_mean)
    assert row.verified_test_mean == pytest.approx(own.test_mean)
    page = (searched / "report.html").read_text()
    assert f"trial {number}: lr 0.02 (target {cfg.recipe.lr:g})" in page  # named below the table


def test_a_search_whose_verification_fails_keeps_its_reports(searched, monkeypatch):
    """The search is done when its verification starts (here: a finished search resumed with
    --verify-seeds, the same path as a new one's end): a seed that fails there is recorded,
    the reports are written, and the command ends with one line on the failed seeds."""
    from budgetnas.reports.page.run import vs_target

    _failing(monkeypatch, {2})  # every network: seed 1 verified, seed 2 fails
    for name in ("report.html", "trials.csv", "pareto.csv"):
        (searched / name).unlink(missing_ok=True)
    # a race of at most 2 seeds: every network gets its 2 and no more
    args = ["search", "--resume", str(searched), "--verify-seeds", "2", "--race-seeds", "2"]
    result = runner.invoke(app, [*args, "--device", "cpu"])
    assert result.exit_code == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and " verify seeds failed (" in lines[-1]
    assert f"the last: {NAN}" in lines[-1]
    assert [line for line in lines if line.startswith("error:")] == [lines[-1]]
    assert any("seed 2  failed: " in line for line in lines)
    for name in ("report.html", "trials.csv", "pareto.csv"):
        assert (searched / name).is_file(), name
    pareto = pd.read_csv(searched / "pareto.csv")
    verified = pareto[pareto["verified_seeds"].notna()]
    assert len(verified) >= 1
    assert (verified["verified_seeds"] == 1).all() and (verified["verified_failed"] == 1).all()
    assert verified["verified_test_std"].isna().all()  # one seed: no spread
    cfg, study = open_run(searched)
    at_the_target = [v for v in stored_results(study).values() if vs_target(cfg, v) == "target"]
    assert len(at_the_target) >= len(verified)
    for v in at_the_target:
        assert [r.seed for r in v.runs] == [1] and [f.seed for f in v.failed] == [2]
        assert v.test_mean == v.runs[0].test_acc
    page = (searched / "report.html").read_text()
    assert "1 (1 failed)" in page and "(1 seed)" in page and "± 0.00%" not in page


@pytest.mark.parametrize(
    "values, text",
    [([0.9712], "97.12% (1 seed)"), ([0.97, 0.98], "97.50% ± 0.71%"), ([], "-")],
)
def test_one_seed_has_no_spread(values, text):
    from budgetnas.reports.page.tables import mean_std_text
    from budgetnas.search.verification.records import mean_spread

    assert mean_spread(values) == text
    std = statistics.stdev(values) if len(values) > 1 else None
    mean = statistics.fmean(values) if values else None
    assert mean_std_text(mean, std, len(values)) == text


@pytest.mark.slow
def test_a_resumed_search_fails_on_no_seed_that_diverged_before(
    tmp_path, synthetic_root, monkeypatch
):
    """--resume of a search whose verification had a diverged seed: nothing new fails, so
    the command ends with exit 0; the seed is still listed as failed, in no mean."""
    out = tmp_path / "run"
    run_search(quick_config(synthetic_root, out, verify_seeds=0), quiet=True)
    _failing(monkeypatch, {2})
    args = ["search", "--resume", str(out), "--verify-seeds", "2", "--device", "cpu"]
    first = runner.invoke(app, args)
    assert first.exit_code == 1, first.stdout + first.stderr
    trained = _failing(monkeypatch, set())
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.stdout + again.stderr
    assert trained == []
    assert not [line for line in again.stderr.splitlines() if line.startswith("error:")]
    cfg, study = open_run(out)
    assert all([f.seed for f in v.failed] == [2] for v in stored_results(study).values())
