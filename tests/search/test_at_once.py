"""Several candidates at once in one trial process (``--concurrent K``, search/study/at_once.py)
and how K is chosen (search/study/concurrency.py)."""

from __future__ import annotations

import collections

import pytest
import torch
from optuna.trial import TrialState
from typer.testing import CliRunner

from budgetnas.reports.front.compute import process_seconds
from budgetnas.search.cache.store import ResultCache
from budgetnas.search.cli import app
from budgetnas.search.pipeline import run_search
from budgetnas.search.schedule.budgets import _rate
from budgetnas.search.schedule.trials import lineage, rung_of
from budgetnas.search.study import concurrency
from budgetnas.search.study.concurrency import choose, measure, parse_concurrent, probe_specs
from budgetnas.search.study.runs import open_run
from budgetnas.space.count import analyze
from budgetnas.trainers.data import load_train_val
from tests.helpers import cli_error, quick_config, search_args

runner = CliRunner()
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def trained(study) -> list[tuple]:
    """Per trial: its number, state, spec, values and validation curve."""
    return [
        (t.number, t.state, t.user_attrs.get("spec"), t.values, t.user_attrs.get("val_curve"))
        for t in study.get_trials(deepcopy=False)
    ]


@pytest.mark.slow
def test_three_at_once_train_the_same_trials_as_one_at_a_time(tmp_path, mnist_root):
    """A random sampler on one rung, unpruned: K = 3 samples the same candidates in the same
    order and trains each to the same accuracies as one at a time (a seed network among
    them, at once with the candidates)."""
    common = dict(
        sampler="random",
        rungs=1,
        trials=7,
        epochs=2,
        train_subset=600,
        caps=(10_000,),
        references=("002",),
        seed=5,
    )
    one = run_search(quick_config(mnist_root, tmp_path / "one", **common), quiet=True)
    three = run_search(
        quick_config(mnist_root, tmp_path / "three", concurrent=3, **common), quiet=True
    )
    a, b = trained(one), trained(three)
    assert len(a) == 8 and sum(1 for t in a if t[1] == TrialState.COMPLETE) == 8
    assert len({t[3][0] for t in a}) >= 6  # accuracies that tell the trials apart
    assert b == a
    at_once = [t.user_attrs.get("at_once", 1) for t in three.get_trials(deepcopy=False)]
    assert max(at_once) > 2  # three in flight for most of their time
    assert "at_once" not in one.get_trials(deepcopy=False)[0].user_attrs


@pytest.mark.slow
def test_at_once_with_promotions_pruning_and_the_cache(tmp_path, synthetic_root):
    """Every default that decides on other trials (TPE, the banded pruner, two rungs), four at
    once: each candidate trained once at each rung it reached, promotions done, and a second
    search on the same cache reuses what the first trained."""
    cache = ResultCache(tmp_path / "cache")
    options = dict(
        trials=10, rungs=2, epochs=2, train_subset=600, pruner="banded", references=("001",)
    )
    cfg = quick_config(synthetic_root, tmp_path / "a", concurrent=4, **options)
    study = run_search(cfg, quiet=True, cache=cache)
    done = [t for t in study.get_trials(deepcopy=False) if t.state in FINISHED]
    per = collections.Counter(
        (lineage(t), rung_of(t)) for t in done if not t.user_attrs.get("reference")
    )
    assert per and max(per.values()) == 1
    assert sum(1 for (_, rung) in per if rung == 0) == 10
    assert any(rung == 1 for (_, rung) in per)  # promotions trained beside new candidates
    assert not [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.FAIL]
    again = run_search(
        quick_config(synthetic_root, tmp_path / "b", concurrent=4, **options),
        quiet=True,
        cache=cache,
    )
    reused = [t for t in again.get_trials(deepcopy=False) if t.user_attrs.get("cached")]
    assert reused  # the first sampled candidates are the same: their trainings are reused


@pytest.mark.slow
def test_a_ctrl_c_leaves_every_trial_in_flight_for_the_resume(
    tmp_path, synthetic_root, monkeypatch
):
    """A Ctrl-C with three trainings in flight: each is marked interrupted (not a failure of
    its candidate); the resume trains them again and the search ends whole."""
    from budgetnas.trainers import many

    rounds = {"n": 0}
    real = many.AtOnce.round

    def round_then_stop(self):
        rounds["n"] += 1
        if rounds["n"] == 4:
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(many.AtOnce, "round", round_then_stop)
    cfg = quick_config(synthetic_root, tmp_path / "run", concurrent=3, trials=5, rungs=1)
    with pytest.raises(KeyboardInterrupt):
        run_search(cfg, quiet=True)
    _, study = open_run(tmp_path / "run")
    stopped = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.FAIL]
    assert len(stopped) == 3
    assert all(t.user_attrs["interrupted"] for t in stopped)
    assert all("error" not in t.user_attrs for t in stopped)
    monkeypatch.setattr(many.AtOnce, "round", real)
    study = run_search(cfg, resume=True, quiet=True)
    done = [t for t in study.get_trials(deepcopy=False) if t.state in FINISHED]
    assert len({lineage(t) for t in done}) == 5


def test_the_probe_times_each_k_on_the_searchs_own_networks(synthetic_root, tmp_path):
    cfg = quick_config(synthetic_root, tmp_path / "run", batch_size=16)
    specs = probe_specs(cfg, 3)
    assert len(specs) == 3 and all(analyze(s).params <= 5000 for s in specs)
    data = load_train_val("mnist", data_dir=synthetic_root, val_size=32, train_subset=300)
    rates = measure(specs, data, cfg, device=torch.device("cpu"), ks=(1, 2), steps=3)
    assert set(rates) == {1, 2} and all(r > 0 for r in rates.values())
    tiny = data.first(40)  # fewer images than the warm-up and the timed steps take
    assert measure(specs, tiny, cfg, device=torch.device("cpu"), ks=(1, 2)) == {}


def test_the_smallest_k_near_the_most_images_a_second_is_chosen():
    assert choose({1: 100.0, 2: 180.0, 4: 300.0, 8: 310.0, 16: 290.0}) == 4
    assert choose({1: 100.0, 2: 99.0}) == 1
    assert choose({}) == 1


def test_a_cpu_search_takes_one_at_a_time_unless_told(tmp_path, synthetic_root):
    cfg = quick_config(synthetic_root, tmp_path / "run", trials=1)
    assert cfg.concurrent is None
    study = run_search(cfg, quiet=True)
    assert study.user_attrs[concurrency.CONCURRENT_ATTR] == 1
    assert study.user_attrs[concurrency.GAIN_ATTR] == 1.0


def test_concurrent_options_that_are_not_a_count_are_one_line(tmp_path, synthetic_root):
    assert parse_concurrent("auto") is None and parse_concurrent(" 4 ") == 4
    for bad, says in (("many", "--concurrent takes a number"), ("0", "at least 1")):
        args = search_args(synthetic_root, tmp_path / bad, "--concurrent", bad)
        assert says in cli_error(runner.invoke(app, args))
        assert not (tmp_path / bad).exists()


def test_the_header_names_the_candidates_at_once(tmp_path, synthetic_root):
    args = search_args(synthetic_root, tmp_path / "run", "--concurrent", "2", "--trials", "2")
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "(2 candidates at once)" in result.stderr.splitlines()[0]


def test_a_trial_trained_beside_others_counts_its_share_of_the_time():
    """The time budget's rate is the process's: two trials at once, each 10 s of wall time
    for 1 epoch of 100 images, took 10 s of the process for both."""

    class T:
        def __init__(self, at_once):
            self.state = TrialState.COMPLETE
            self.user_attrs = {"val_curve": [0.5], "wall_time_s": 10.0, "train_images": 100}
            if at_once:
                self.user_attrs["at_once"] = at_once

    assert _rate([T(None), T(None)], lambda t: 1.0) == pytest.approx(0.1)
    assert _rate([T(2.0), T(2.0)], lambda t: 1.0) == pytest.approx(0.05)
    assert process_seconds(T(2.0).user_attrs) == 5.0  # the compute line's minutes
    assert process_seconds(T(None).user_attrs) == 10.0


@pytest.mark.gpu
def test_a_cuda_search_measures_how_many_candidates_at_once(tmp_path, synthetic_root):
    """On CUDA --concurrent auto times K = 1 ... 16 on the search's own candidates and the
    header names the K it takes and the rates; the trials train at once, none lost."""
    run = tmp_path / "run"
    extra = ("--device", "cuda", "--train-subset", "2000", "--batch-size", "32", "--trials", "6")
    result = runner.invoke(app, search_args(synthetic_root, run, *extra))
    assert result.exit_code == 0, result.output
    note = next(line for line in result.stderr.splitlines() if "at once in each process" in line)
    assert "(measured; training images a second at K = 1:" in note and " 16: " in note
    _, study = open_run(run)
    k = study.user_attrs[concurrency.CONCURRENT_ATTR]
    assert k in concurrency.PROBE_KS and study.user_attrs[concurrency.GAIN_ATTR] > 0
    assert not [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.FAIL]


def test_queued_seed_networks_train_at_once_too(tmp_path, synthetic_root):
    """The seed networks are queued trials: with K = 3 they train side by side like the
    sampled candidates (the schedule's "queued" job opens a slot as "sample" does)."""
    cfg = quick_config(
        synthetic_root,
        tmp_path / "run",
        concurrent=3,
        trials=1,
        rungs=1,
        caps=(13_000,),
        references=("000", "001", "002"),
    )
    study = run_search(cfg, quiet=True)
    references = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("reference")]
    assert len(references) == 3 and all(t.state == TrialState.COMPLETE for t in references)
    assert all(t.user_attrs.get("at_once", 1) > 1.5 for t in references)


def test_a_training_that_cannot_start_fails_its_trial_alone(tmp_path, synthetic_root, monkeypatch):
    """Building a candidate's model fails (as out of memory would) with two others in flight:
    that trial is failed with its error, the others train on, the search ends normally."""
    from budgetnas.trainers import many

    real, calls = many.AtOnce.add, []

    def add(self, job):
        calls.append(job)
        if len(calls) == 2:
            raise RuntimeError("no memory for this one")
        return real(self, job)

    monkeypatch.setattr(many.AtOnce, "add", add)
    cfg = quick_config(synthetic_root, tmp_path / "run", concurrent=3, trials=4, rungs=1)
    study = run_search(cfg, quiet=True)
    trials = study.get_trials(deepcopy=False)
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == 1 and "no memory for this one" in failed[0].user_attrs["error"]
    assert sum(1 for t in trials if t.state == TrialState.COMPLETE) == 4
