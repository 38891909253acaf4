"""Reference networks trained in the study, and the multi-objective samplers."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from budgetnas.search import objective
from budgetnas.search.cli import app
from budgetnas.search.config import parse_references
from budgetnas.search.driver import run_search
from budgetnas.search.errors import SearchError
from budgetnas.search.pruners import BandedMedianPruner
from budgetnas.search.runs import finished, open_run
from budgetnas.space.count import count_params
from budgetnas.space.zoo import ZOO
from tests.helpers import cli_error, quick_config, search_args

runner = CliRunner()


@pytest.fixture(scope="module")
def ref_run(tmp_path_factory, synthetic_root):
    run = tmp_path_factory.mktemp("refs") / "run"
    result = runner.invoke(app, search_args(synthetic_root, run, "--trials", "3", budget="10k"))
    assert result.exit_code == 0, result.stderr
    return run, result.stderr


def test_zoo_networks_under_the_cap_are_trained_in_the_study(ref_run):
    run, stderr = ref_run
    cfg, study = open_run(run)
    refs = {t.user_attrs["reference"]: t for t in study.trials if t.user_attrs.get("reference")}
    under = {k for k, e in ZOO.items() if count_params(e.spec) <= 10_000}
    assert set(refs) == under == {"001", "002"}
    for key, t in refs.items():
        assert t.state == TrialState.COMPLETE
        assert t.user_attrs["params"] == count_params(ZOO[key].spec)
        assert t.user_attrs["recipe"] == cfg.recipe.to_dict()  # the run's recipe and seed
        assert len(t.user_attrs["val_curve"]) == cfg.recipe.epochs
        assert f"reference: seed network {key}" in stderr
    assert finished(study) == 3  # references do not count towards --trials
    assert len(study.trials) == 5
    table = pd.read_csv(run / "trials.csv", dtype={"reference": str})
    assert sorted(table["reference"].dropna()) == ["001", "002"]


def test_report_draws_references_at_their_measured_accuracy(ref_run):
    """Computed, then drawn: the yardstick trace holds exactly the measured points."""
    from budgetnas.reports.frame import trials_frame
    from budgetnas.reports.html import pareto_figure
    from budgetnas.reports.pareto import pareto_front

    run, _ = ref_run
    _, study = open_run(run)
    df = trials_frame(study.trials)
    fig = pareto_figure(df, pareto_front(df, cap=10_000), cap=10_000)
    (trace,) = [t for t in fig.data if t.name == "seed networks (trained in this study)"]
    refs = {t.user_attrs["reference"]: t for t in study.trials if t.user_attrs.get("reference")}
    assert list(trace.text) == [f"seed {k}" for k in refs]
    assert list(trace.x) == [count_params(ZOO[k].spec) for k in refs]
    assert list(trace.y) == [max(1 - t.values[0], 1e-4) for t in refs.values()]
    assert f"published: {ZOO['001'].claimed_accuracy:.2%} test accuracy" in trace.hovertext[0]
    page = (run / "report.html").read_text()
    assert "published test acc" not in page  # no published figure drawn as a point


def test_the_default_sampler_is_multi_objective(ref_run):
    run, _ = ref_run
    cfg, study = open_run(run)
    assert cfg.sampler == "motpe" and len(study.directions) == 2
    for t in study.trials:
        if t.state == TrialState.COMPLETE:
            assert t.values[1] == t.user_attrs["params"]


def test_ladder_puts_each_reference_on_its_smallest_rung(tmp_path, synthetic_root):
    cfg = quick_config(synthetic_root, tmp_path / "run", caps=(9_000, 13_000), trials=1)
    assert {k: cap for k, (_, cap) in cfg.reference_specs().items()} == {
        "000": 13_000,
        "001": 13_000,
        "002": 9_000,
    }


@pytest.mark.parametrize(
    "text, keys",
    [("all", tuple(ZOO)), ("none", ()), ("001,004", ("001", "004")), (" 002 ", ("002",))],
)
def test_parse_references(text, keys):
    assert parse_references(text) == keys


def test_unknown_reference_is_one_line(tmp_path, synthetic_root):
    args = search_args(synthetic_root, tmp_path / "r", "--references", "001,777", budget="10k")
    assert cli_error(runner.invoke(app, args)) == (
        "error: --references: no zoo entry '777'; use all, none or keys of 000, 001, 002, 003, 004"
    )
    with pytest.raises(SearchError):
        parse_references("0001")


def test_references_none_and_a_chosen_one(tmp_path, synthetic_root):
    none = quick_config(synthetic_root, tmp_path / "a", caps=(10_000,), trials=1, references="none")
    study = run_search(none, quiet=True)
    assert not any(t.user_attrs.get("reference") for t in study.trials)
    one = quick_config(synthetic_root, tmp_path / "b", caps=(10_000,), trials=1, references="002")
    study = run_search(one, quiet=True)
    assert [t.user_attrs.get("reference") for t in study.trials] == ["002", None]


def test_references_are_never_pruned_and_sampled_trials_are(tmp_path, synthetic_root, monkeypatch):
    monkeypatch.setattr(BandedMedianPruner, "decide", lambda *a, **k: True)
    cfg = quick_config(
        synthetic_root,
        tmp_path / "r",
        caps=(10_000,),
        trials=3,
        epochs=2,
        pruner="banded",
        rungs=1,
    )
    study = run_search(cfg, quiet=True)
    refs = [t for t in study.trials if t.user_attrs.get("reference")]
    sampled = [t for t in study.trials if not t.user_attrs.get("reference")]
    assert [t.state for t in refs] == [TrialState.COMPLETE] * 2
    assert all(t.state == TrialState.PRUNED for t in sampled)
    assert all(len(t.user_attrs["val_curve"]) == 1 for t in sampled)  # cut after epoch 1


def test_multi_objective_sampler_refuses_optunas_pruners(tmp_path, synthetic_root):
    args = search_args(synthetic_root, tmp_path / "r", "--pruner", "median")
    assert cli_error(runner.invoke(app, args)) == (
        "error: --pruner median works only with a single-objective sampler (tpe, random); "
        "with --sampler motpe use banded or none"
    )
    tpe = runner.invoke(app, [*args, "--sampler", "tpe", "--trials", "2"])
    assert tpe.exit_code == 0, tpe.stderr


@pytest.mark.parametrize("sampler", ["nsga2", "random", "tpe"])
def test_every_sampler_runs_a_search_with_references(tmp_path, synthetic_root, sampler):
    cfg = quick_config(
        synthetic_root, tmp_path / sampler, caps=(10_000,), trials=3, sampler=sampler
    )
    study = run_search(cfg, quiet=True)
    assert finished(study) == 3
    refs = [t for t in study.trials if t.user_attrs.get("reference")]
    assert sorted(t.user_attrs["reference"] for t in refs) == ["001", "002"]
    assert all(t.state == TrialState.COMPLETE and not t.params for t in refs)
    assert len(study.directions) == (2 if sampler == "nsga2" else 1)


def test_a_run_from_before_samplers_resumes_single_objective(tmp_path, synthetic_root):
    run = tmp_path / "run"
    run_search(quick_config(synthetic_root, run, trials=2, sampler="tpe", references="none"))
    config = json.loads((run / "config.json").read_text())
    del config["sampler"], config["references"]
    (run / "config.json").write_text(json.dumps(config))
    result = runner.invoke(app, ["search", "--resume", str(run), "--trials", "3"])
    assert result.exit_code == 0, result.stderr
    cfg, study = open_run(run)
    assert cfg.sampler == "tpe" and len(study.directions) == 1 and finished(study) == 3


def test_reference_trials_use_the_objective_not_the_sampler(monkeypatch, tmp_path, synthetic_root):
    """A reference never calls the sampler (its spec is the zoo's, not a suggestion)."""
    calls = []
    real = objective.sample_spec
    monkeypatch.setattr(objective, "sample_spec", lambda *a, **k: calls.append(1) or real(*a, **k))
    cfg = quick_config(synthetic_root, tmp_path / "r", caps=(10_000,), trials=1)
    study = run_search(cfg, quiet=True)
    assert len(study.trials) == 3 and len(calls) == 1


def _searched(root, out, *, sampler, references, trials=14):
    cfg = quick_config(
        root, out, caps=(10_000,), trials=trials, sampler=sampler, references=references, seed=1
    )
    study = run_search(cfg, quiet=True)
    return [t for t in study.trials if not t.user_attrs.get("reference")]


@pytest.mark.parametrize(
    "sampler",
    ["motpe", *(pytest.param(s, marks=pytest.mark.slow) for s in ("tpe", "nsga2", "random"))],
)
def test_references_do_not_change_what_a_sampler_proposes(tmp_path, synthetic_root, sampler):
    """Same seed, no pruning: the same candidates with and without reference networks, past
    TPE's start-up trials and NSGA-II's first generation."""
    without = _searched(synthetic_root, tmp_path / "none", sampler=sampler, references="none")
    with_refs = _searched(synthetic_root, tmp_path / "all", sampler=sampler, references="all")
    assert len(without) == 14
    assert [t.user_attrs.get("spec") for t in with_refs] == [
        t.user_attrs.get("spec") for t in without
    ]
    assert [t.params for t in with_refs] == [t.params for t in without]


@pytest.mark.slow  # trains for more than ten seconds on 2 cores
def test_nsga2_evolves_every_parameter_of_the_space(tmp_path, synthetic_root):
    """Every nsga2 trial suggests every parameter (a third stage's too), so Optuna's
    intersection search space, the part NSGA-II crosses over, is the whole space; the other
    samplers suggest only what a candidate uses."""
    from optuna.search_space import intersection_search_space

    nsga2 = _searched(synthetic_root, tmp_path / "n", sampler="nsga2", references="all")
    space = intersection_search_space(nsga2)
    assert {"stages", "s2_convs", "s2_w2", "s1_res", "t1_w", "t1_pool_first", "size"} <= set(space)
    # stages; per stage: convs, pad, res, 3 widths; per transition: width, order; head; size
    assert len(space) == 25
    generations = {v for t in nsga2 for k, v in t.system_attrs.items() if k.endswith(":generation")}
    assert generations == {0, 1}  # the second generation was bred, not drawn
    motpe = _searched(synthetic_root, tmp_path / "m", sampler="motpe", references="none", trials=4)
    shared = set(intersection_search_space(motpe))
    every = {"stages", "s0_convs", "s0_pad", "s0_w0", "t0_w", "t0_pool_first", "s1_convs"}
    assert every | {"s1_pad", "s1_w0", "head", "size"} <= shared  # the 11 every candidate has
    assert len(shared) < 25  # and not the ones a candidate does not use
