"""Reference networks trained in the study, and the multi-objective samplers."""

from __future__ import annotations

import json
from dataclasses import replace

import pandas as pd
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from budgetnas.search.cli import app
from budgetnas.search.errors import SearchError
from budgetnas.search.pipeline import run_search
from budgetnas.search.sampling import objective
from budgetnas.search.sampling.pruners import BandedMedianPruner
from budgetnas.search.study.config import parse_references
from budgetnas.search.study.runs import candidates_trained, open_run
from budgetnas.search.verification.records import Verified, stored_results
from budgetnas.space.count import count_params
from budgetnas.space.spec import ArchSpec, Conv, Head, Transition
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
    assert candidates_trained(study) == 3  # references do not count towards --trials
    assert len(study.trials) == 5
    table = pd.read_csv(run / "trials.csv", dtype={"reference": str})
    assert sorted(table["reference"].dropna()) == ["001", "002"]


def test_report_draws_references_at_their_measured_accuracy(ref_run):
    """Computed, then drawn: the yardstick trace holds exactly the measured points."""
    from budgetnas.reports.front.frame import trials_frame
    from budgetnas.reports.front.pareto import pareto_front
    from budgetnas.reports.page.figures import pareto_figure

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
    assert candidates_trained(study) == 3
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
    assert cfg.sampler == "tpe" and len(study.directions) == 1 and candidates_trained(study) == 3


def test_reference_trials_use_the_objective_not_the_sampler(monkeypatch, tmp_path, synthetic_root):
    """A reference never calls the sampler (its spec is the zoo's, not a suggestion)."""
    calls = []
    real = objective.sample_spec
    monkeypatch.setattr(objective, "sample_spec", lambda *a, **k: calls.append(1) or real(*a, **k))
    cfg = quick_config(synthetic_root, tmp_path / "r", caps=(10_000,), trials=1)
    study = run_search(cfg, quiet=True)
    assert len(study.trials) == 3 and len(calls) == 1


def _searched(root, out, *, sampler, references, trials=14, sizing="aimed"):
    cfg = quick_config(
        root,
        out,
        caps=(10_000,),
        trials=trials,
        sampler=sampler,
        references=references,
        seed=1,
        sizing=sizing,
    )
    study = run_search(cfg, quiet=True)
    return [t for t in study.trials if not t.user_attrs.get("reference")]


@pytest.mark.parametrize(
    "sampler",
    # each trains two searches of a few candidates (random: 12 s on 2 cores): all run in CI
    [pytest.param(s, marks=pytest.mark.slow) for s in ("random", "tpe", "nsga2", "motpe")],
)
def test_references_do_not_change_what_a_sampler_proposes(tmp_path, synthetic_root, sampler):
    """Same seed, no pruning: the same candidates with and without reference networks, past
    TPE's start-up trials and NSGA-II's first generation (with ``spread`` sizing: ``aimed``
    sizes some candidates at the seed networks' aims, by design)."""
    args = {"sampler": sampler, "sizing": "spread"}
    without = _searched(synthetic_root, tmp_path / "none", references="none", **args)
    with_refs = _searched(synthetic_root, tmp_path / "all", references="all", **args)
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


# ---- a seed network that changed: its identity is its spec, not its key --------------------


def _old_000() -> ArchSpec:
    """Seed 000 as the zoo held it before it had channel dropout: element dropout 0.09."""

    def conv(out: int, pad: int = 0) -> Conv:
        return Conv(out, pad=pad, order="act_bn", dropout=0.09)

    blocks = (conv(16), conv(32), Transition(8, pool_first=False), conv(16), conv(16))
    return ArchSpec(blocks=(*blocks, conv(16, pad=1)), head=Head(kind="conv_gap", k=3, bias=False))


VERIFY_QUICK = ("--train-subset", "200", "--device", "cpu")


def _made_with_old_000(run, root, references: str) -> None:
    """A run searched (and seed 000 verified with one seed) while the zoo held the old 000."""
    old = _old_000()
    assert old != ZOO["000"].spec and count_params(old) == count_params(ZOO["000"].spec)
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(ZOO, "000", replace(ZOO["000"], spec=old))
        extra = ("--trials", "1", "--rungs", "1", "--references", references)
        result = runner.invoke(app, search_args(root, run, *extra, budget="15k"))
        assert result.exit_code == 0, result.stderr
        args = ["verify", str(run), "--zoo", "000", "--seeds", "1", *VERIFY_QUICK]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.stderr


def _record_000(run) -> Verified:
    _, study = open_run(run)
    (record,) = [v for v in stored_results(study).values() if v.key == "zoo-000"]
    return record


@pytest.mark.slow
def test_a_run_that_trained_an_earlier_seed_000_does_not_mix_it_with_the_new_one(
    tmp_path, synthetic_root
):
    """Seed 000 changed (element to channel dropout) under the same key: a run whose
    reference trials hold the old network is neither resumed nor verified with the new one
    (one line each, nothing trained); the old network, picked by its trial, still verifies
    into its own record."""
    run = tmp_path / "run"
    _made_with_old_000(run, synthetic_root, "000")
    _, study = open_run(run)
    before = len(study.trials)
    (reference,) = [t.number for t in study.trials if t.user_attrs.get("reference") == "000"]
    line = cli_error(runner.invoke(app, ["search", "--resume", str(run), "--trials", "2"]))
    assert line.startswith(
        f"error: seed 000 has changed since this run trained it: trial {reference} holds "
        "another network under that key"
    ), line
    assert len(open_run(run)[1].trials) == before
    args = ["verify", str(run), "--zoo", "000", "--seeds", "2", *VERIFY_QUICK]
    line = cli_error(runner.invoke(app, args))
    assert line.startswith("error: seed 000 has changed since this run trained it"), line
    assert len(_record_000(run).runs) == 1
    args = ["verify", str(run), "--trial", str(reference), "--seeds", "2", *VERIFY_QUICK]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    record = _record_000(run)
    assert len(record.runs) == 2 and ArchSpec.from_json(record.spec).blocks == _old_000().blocks


@pytest.mark.slow
def test_a_verify_record_of_an_earlier_seed_000_gets_no_seeds_of_the_new_one(
    tmp_path, synthetic_root
):
    """A run without reference trials whose verify record of seed 000 holds the old network:
    verifying seed 000 again at that fidelity is one line, the record keeps its one seed."""
    run = tmp_path / "run"
    _made_with_old_000(run, synthetic_root, "none")
    args = ["verify", str(run), "--zoo", "000", "--seeds", "2", *VERIFY_QUICK]
    line = cli_error(runner.invoke(app, args))
    assert line.startswith("error: seed 000 has changed since this run verified it"), line
    record = _record_000(run)
    assert len(record.runs) == 1 and ArchSpec.from_json(record.spec).blocks == _old_000().blocks
