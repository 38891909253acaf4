"""MAC and activation-memory caps: enforced before training like the parameter cap."""

from __future__ import annotations

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from budgetnas.search.cli import app
from budgetnas.search.pipeline import run_search
from budgetnas.search.sampling import objective
from budgetnas.search.study.runs import open_run, summary_counts
from budgetnas.space.count import analyze
from budgetnas.space.memory import activation_memory
from budgetnas.space.sample import Rejected, sample_spec
from budgetnas.space.spec import ArchSpec, Conv, Head, Transition
from tests.helpers import cli_error, quick_config, search_args

runner = CliRunner()


def _specs(n: int, **caps):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    specs, rejected = [], []
    for _ in range(n):
        trial = study.ask()
        try:
            specs.append(sample_spec(trial, budget=10_000, **caps))
        except Rejected as rej:
            rejected.append(rej.cap)
        study.tell(trial, 0.0)
    return specs, rejected


@pytest.mark.parametrize("macs, activation", [(2_000_000, 16_384), (500_000, 8_192)])
def test_sampled_specs_fit_every_cap(macs, activation):
    specs, rejected = _specs(100, macs=macs, activation=activation)
    assert all(analyze(s).macs <= macs for s in specs)
    assert all(activation_memory(s).peak <= activation for s in specs)
    assert set(rejected) <= {"MACs", "activation"}
    assert len(specs) + len(rejected) == 100
    free, _ = _specs(100)
    assert max(analyze(s).macs for s in free) > macs  # the caps did bind
    assert max(activation_memory(s).peak for s in free) > activation


def test_search_never_trains_over_a_cap(tmp_path, synthetic_root, monkeypatch):
    trained = []
    real = objective.train
    monkeypatch.setattr(
        objective, "train", lambda spec, *a, **k: trained.append(spec) or real(spec, *a, **k)
    )
    run = tmp_path / "run"
    args = search_args(
        synthetic_root, run, "--trials", "6", "--max-macs", "250k", "--max-activation-kb", "6"
    )
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    assert trained
    for spec in trained:
        assert analyze(spec).macs <= 250_000
        assert activation_memory(spec).peak <= 6 * 1024
    table = pd.read_csv(run / "trials.csv")
    done = table[table["state"] == "complete"]
    assert (done["macs"] <= 250_000).all() and (done["act_int8_bytes"] <= 6 * 1024).all()
    assert (done["act_f32_bytes"] == 4 * done["act_int8_bytes"]).all()
    cfg, _ = open_run(run)
    assert (cfg.max_macs, cfg.max_activation_kb) == (250_000, 6.0)


OVER = ArchSpec(blocks=(Conv(16, pad=1), Transition(8), Conv(16)), head=Head())


@pytest.mark.parametrize(
    "caps, by, reason",
    [
        ({"max_macs": 100_000}, "MACs", "MACs over the cap 100,000"),
        ({"max_activation_kb": 10}, "activation", "bytes (int8) over the cap 10,240"),
    ],
)
def test_a_candidate_over_a_cap_is_rejected_not_trained(
    tmp_path, synthetic_root, monkeypatch, caps, by, reason
):
    assert analyze(OVER).macs > 100_000 and activation_memory(OVER).peak > 10_240
    from budgetnas.search.errors import SearchError
    from budgetnas.search.study import driver

    monkeypatch.setattr(objective, "sample_spec", lambda *a, **k: OVER)
    monkeypatch.setattr(driver, "REJECTIONS_IN_A_ROW", 2)
    with pytest.raises(SearchError, match="2 candidates in a row were over a cap"):
        run_search(quick_config(synthetic_root, tmp_path / "run", trials=2, **caps))
    _, study = open_run(tmp_path / "run")
    for t in study.trials:
        assert t.state == TrialState.PRUNED and "weights" not in t.user_attrs
        assert t.user_attrs["rejected_by"] == by and reason in t.user_attrs["rejected"]
    assert summary_counts(study)["rejected_by"] == {by: 2}


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--max-macs", "0"], "bad --max-macs '0': it must be at least 1 MAC"),
        (["--max-macs", "lots"], "bad --max-macs 'lots': write a MAC count such as 10000"),
        (["--max-macs", "-2M"], "bad --max-macs '-2M': it must be a positive number of MACs"),
        (["--max-macs", "1000"], "--max-macs 1,000 is below the smallest network the space can"),
        (["--max-activation-kb", "0"], "--max-activation-kb must be positive, got 0.0"),
        (["--max-activation-kb", "0.1"], "--max-activation-kb 0.1 is below the smallest network"),
    ],
)
def test_bad_cap_values_are_one_line(tmp_path, synthetic_root, extra, message):
    line = cli_error(runner.invoke(app, search_args(synthetic_root, tmp_path / "r", *extra)))
    assert line.startswith("error: " + message), line
    assert not (tmp_path / "r").exists()


def test_a_cap_never_changes_the_structure_drawn():
    """The same suggestions under a tight memory cap give the same structure, narrower, or
    a rejection: never another structure (shortcuts dropped, padding removed)."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    checked = rejected = 0
    for _ in range(200):
        trial = study.ask()
        free = sample_spec(trial, budget=10_000)
        study.tell(trial, 0.0)
        try:
            capped = sample_spec(
                optuna.trial.FixedTrial(trial.params), budget=10_000, activation=8_192
            )
        except Rejected:
            rejected += 1
            continue
        shape = [(b.kind, getattr(b, "pad", None)) for b in capped.blocks]
        assert shape == [(b.kind, getattr(b, "pad", None)) for b in free.blocks]
        assert capped.head == free.head
        checked += 1
    assert checked and rejected  # both outcomes were exercised


def test_the_caps_do_not_narrow_the_space():
    """A structure is sampled as drawn: under a tight memory cap residual first stages are
    still proposed (and fit, narrower), never silently dropped."""
    specs, _ = _specs(100, activation=16_384)
    assert any(s.blocks[0].kind == "residual" for s in specs)
    assert any(s.blocks[0].pad for s in specs if s.blocks[0].kind == "conv")


def test_rejected_candidates_do_not_use_up_the_trial_count(tmp_path, synthetic_root, monkeypatch):
    trained = []
    real = objective.train
    monkeypatch.setattr(
        objective, "train", lambda spec, *a, **k: trained.append(spec) or real(spec, *a, **k)
    )
    run = tmp_path / "run"
    args = search_args(synthetic_root, run, "--trials", "6", "--max-macs", "200k", budget="10k")
    result = runner.invoke(app, [*args, "--references", "none", "--seed", "2"])
    assert result.exit_code == 0, result.stderr
    _, study = open_run(run)
    rejected = [t for t in study.trials if t.user_attrs.get("rejected")]
    assert rejected, "no candidate was over the MAC cap: the test would not cover it"
    assert len(trained) == 6
    assert f"{len(rejected)} rejected before training" in result.stderr


def test_rejections_that_keep_coming_stop_the_search(tmp_path, synthetic_root, monkeypatch):
    from budgetnas.search.study import driver

    monkeypatch.setattr(driver, "REJECTIONS_IN_A_ROW", 7)
    monkeypatch.setattr(objective, "sample_spec", lambda *a, **k: OVER)
    run = tmp_path / "run"
    args = search_args(synthetic_root, run, "--trials", "3", "--max-macs", "100k", "--quiet")
    line = cli_error(runner.invoke(app, args))
    assert line.startswith("error: 7 candidates in a row were over a cap before training")
    assert "MACs over the cap 100,000" in line
    _, study = open_run(run)
    assert len(study.trials) == 7
