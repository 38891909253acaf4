"""Budget ladder, duplicate reuse, recipe search and verify, on synthetic data."""

from __future__ import annotations

import optuna
import pytest
from typer.testing import CliRunner

from budgetnas.search.cli import app
from budgetnas.search.pipeline import run_search
from budgetnas.search.schedule.trials import verify_seeds
from budgetnas.search.study.runs import open_run
from budgetnas.search.verification import retrain as verify_module
from budgetnas.search.verification.records import ladder_rows, stored_results
from budgetnas.search.verification.retrain import verify_run
from tests.helpers import quick_config

runner = CliRunner()


@pytest.fixture(scope="module")
def ladder_run(tmp_path_factory, synthetic_root):
    out = tmp_path_factory.mktemp("ladder") / "run"
    run_search(quick_config(synthetic_root, out, caps=(2000, 5000)), quiet=True)
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
    # the same suggestions on the same rung give the same spec
    study.enqueue_trial(first.params, user_attrs={"cap": first.user_attrs["cap"]})
    runner_result = runner.invoke(app, ["search", "--resume", str(ladder_run), "--trials", "5"])
    assert runner_result.exit_code == 0, runner_result.stderr
    _, study = open_run(ladder_run)
    dup = study.trials[4]
    assert dup.user_attrs["cap"] == first.user_attrs["cap"]
    assert dup.user_attrs["duplicate_of"] == first.number
    assert dup.user_attrs["key"] == first.user_attrs["key"]
    assert dup.values == first.values and dup.user_attrs["train_time_s"] == 0.0
    assert dup.user_attrs["weights"] == first.user_attrs["weights"]
    assert "1 reused" in runner_result.stderr


@pytest.mark.parametrize("search_seed, expected", [(0, [1, 2, 3]), (2, [0, 1, 3]), (7, [0, 1])])
def test_verify_seeds_skip_the_search_seed(search_seed, expected):
    assert verify_seeds(len(expected), used=search_seed) == expected


def test_verify_stores_results_and_fills_the_ladder(ladder_run, synthetic_root):
    results = verify_run(ladder_run, top=2, seeds=2, device="cpu", train_subset=200)
    assert len(results) == 2
    _, study = open_run(ladder_run)
    for v in results:
        trained_with = {
            t.user_attrs["recipe"]["seed"] for t in study.trials if "recipe" in t.user_attrs
        }
        assert trained_with == {0}
        assert [r.seed for r in v.runs] == [1, 2]  # not the search's seed 0
        accs = [r.test_acc for r in v.runs]
        assert v.test_mean == pytest.approx(sum(accs) / 2)
        assert v.test_min == min(accs)
        assert v.test_std == pytest.approx(abs(accs[0] - accs[1]) / 2**0.5)
    stored = stored_results(study)
    assert {v.key for v in stored.values()} == {v.key for v in results}
    rows = ladder_rows(stored, (2000, 5000))
    expected = []
    for cap in (2000, 5000):
        under = [v for v in results if v.params <= cap]
        if under:
            best = max(under, key=lambda v: (v.val_mean, -v.params))
            expected.append((best.fidelity_label, cap, best.key))
    assert [(label, cap, v.key) for label, cap, v in rows] == expected != []


def _record(key, params, vals, *, epochs=1, images=100):
    from budgetnas.search.verification.records import Fidelity, SeedRun, Verified

    runs = [SeedRun(i, v, v, epochs, 1.0, "cpu") for i, v in enumerate(vals)]
    fid = Fidelity(epochs, images, {"optimizer": "sgd", "lr": 0.1, "batch_size": 50})
    return Verified(key, params, "{}", {}, None, fid, runs)


def test_ladder_and_best_verified_compare_like_with_like():
    """Searched networks only; the most seeds at a fidelity; the highest fidelity first."""
    from budgetnas.search.verification.records import best_verified

    records = [
        _record("zoo-001", 900, [0.99, 0.99, 0.99]),  # a yardstick: never chosen
        _record("trial-1", 800, [0.97]),  # one lucky seed
        _record("trial-2", 700, [0.95, 0.96, 0.94]),
        _record("trial-3", 400, [0.93, 0.92, 0.94]),
        _record("trial-4", 600, [0.90, 0.90, 0.90], epochs=3),  # the highest fidelity
    ]
    results = {r.store_key: r for r in records}
    rows = [(cap, v.key) for _, cap, v in ladder_rows(results, (500, 1000))]
    assert rows == [(500, "trial-3"), (1000, "trial-2"), (1000, "trial-4")]  # per fidelity
    assert best_verified(results, 1000).key == "trial-4"
    assert best_verified(results, 500).key == "trial-3"
    del results[records[-1].store_key]
    assert best_verified(results, 1000).key == "trial-2"
    assert best_verified({records[0].store_key: records[0]}, 1000) is None


def test_zoo_and_top_are_verified_together(ladder_run):
    """--zoo adds seed networks to --top / --trial; it used to replace them silently."""
    cfg, study = open_run(ladder_run)
    choose = verify_module._choose
    both = choose(cfg, study, trials=None, top=1, zoo=["001"])
    assert [v.key for v in both][1:] == ["zoo-001"] and both[0].key.startswith("trial-")
    assert both[0].key == choose(cfg, study, trials=None, top=1, zoo=None)[0].key
    number = int(both[0].key.removeprefix("trial-"))
    numbered = choose(cfg, study, trials=[number], top=None, zoo=["002"])
    assert [v.key for v in numbered] == [both[0].key, "zoo-002"]
    assert [v.key for v in choose(cfg, study, trials=None, top=None, zoo=["002"])] == ["zoo-002"]


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
    assert "seed 001       9,798" in result.stdout and "zoo-" not in result.stdout
    page = (ladder_run / "report.html").read_text()
    assert "Verified architectures" in page and "seed 001" in page
    for args, msg in [
        (["--top", "0"], "--top must be at least 1, got 0"),
        (["--seeds", "0"], "--seeds must be at least 1, got 0"),
        (["--epochs", "0"], "epochs"),
    ]:
        wrong = runner.invoke(app, ["verify", str(ladder_run), *args])
        assert wrong.exit_code == 1 and msg in wrong.stderr, (args, wrong.stderr)
        assert len(wrong.stderr.strip().splitlines()) == 1
    bad = runner.invoke(app, ["verify", str(ladder_run), "--zoo", "777"])
    assert bad.exit_code == 1 and "no zoo entry '777'" in bad.stderr


def test_search_recipe_samples_and_stores_the_recipe(tmp_path, synthetic_root):
    cfg = quick_config(synthetic_root, tmp_path / "r", trials=3, search_recipe=True)
    study = run_search(cfg, quiet=True)
    recipes = [t.user_attrs["recipe"] for t in study.trials]
    assert len({r["lr"] for r in recipes}) == 3
    for t in study.trials:
        assert {"lr", "label_smoothing", "augment", "dropout"} <= set(t.params)
        assert t.user_attrs["recipe"]["epochs"] == 1  # the epoch budget stays the user's


def test_verify_at_another_fidelity_records_it(ladder_run, monkeypatch):
    """Search cheap (1 epoch), verify at another fidelity: epochs, lr and training images are
    recorded with every result, and results at two fidelities are kept apart."""
    cfg, study = open_run(ladder_run)
    number = next(t.number for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE)
    trained = []
    real = verify_module.train
    monkeypatch.setattr(
        verify_module, "train", lambda *a, **k: trained.append(a[2]) or real(*a, **k)
    )
    args = dict(trials=[number], seeds=1, device="cpu", train_subset=150)
    (one,) = verify_run(ladder_run, **args)
    (two,) = verify_run(ladder_run, epochs=2, lr=0.02, augment=0.5, **args)
    assert [r.epochs for r in trained] == [1, 2]
    assert trained[1].lr == 0.02 and trained[1].augment.degrees == 5.0
    assert two.fidelity.epochs == 2 and two.fidelity.train_images == 150
    assert two.fidelity.recipe["lr"] == 0.02 and one.fidelity.recipe["lr"] == cfg.recipe.lr
    assert "seed" not in two.fidelity.recipe
    assert two.fidelity_label == "2 ep x 150 img, adamw lr 0.02 b50 aug 0.5 beta1 0.7 wd 0.01"
    _, study = open_run(ladder_run)
    stored = stored_results(study)
    assert one.store_key != two.store_key and {one.store_key, two.store_key} <= set(stored)
    assert stored[two.store_key].runs == two.runs


def test_an_interrupted_verify_continues_where_it_stopped(ladder_run, monkeypatch):
    _, study = open_run(ladder_run)
    number = next(t.number for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE)
    args = dict(trials=[number], device="cpu", train_subset=120, epochs=1, lr=0.07)
    (first,) = verify_run(ladder_run, seeds=1, **args)
    trained = []
    real = verify_module.train
    monkeypatch.setattr(
        verify_module, "train", lambda *a, **k: trained.append(a[2].seed) or real(*a, **k)
    )
    (again,) = verify_run(ladder_run, seeds=3, **args)
    assert trained == [2, 3]  # seed 1 was stored already; 0 is the search's own
    assert [r.seed for r in again.runs] == [1, 2, 3]
    assert again.runs[0] == first.runs[0]


def test_verify_cli_prints_the_fidelity(ladder_run):
    _, study = open_run(ladder_run)
    number = next(t.number for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE)
    args = f"verify {ladder_run} --trial {number} --seeds 1 --epochs 2 --train-subset 100"
    result = runner.invoke(app, [*args.split(), "--device", "cpu"])
    assert result.exit_code == 0, result.stderr
    assert "2 ep x 100 img" in result.stdout and "2 ep x 100 img" in result.stderr
    page = (ladder_run / "report.html").read_text()
    assert "2 ep x 100 img" in page


def test_zoo_networks_are_verified_with_the_runs_normalisation(ladder_run, tmp_path):
    """On Fashion-MNIST or KMNIST the yardstick normalises as the run's data do, as the
    references inside the study do; MNIST's mean and std would not be like for like."""
    from dataclasses import replace

    from budgetnas.search.study.config import SearchConfig
    from budgetnas.space.spec import ArchSpec
    from budgetnas.trainers.data import DataConfig

    cfg, study = open_run(ladder_run)
    kmnist = SearchConfig(out=str(tmp_path), caps=(10_000,), data=DataConfig(dataset="kmnist"))
    (item,) = verify_module._choose(kmnist, study, trials=None, top=None, zoo=["001"])
    assert ArchSpec.from_json(item.spec).norm == kmnist.space_config.norm == (0.1918, 0.3483)
    assert kmnist.reference_specs()["001"][0].norm == kmnist.space_config.norm
    (mnist,) = verify_module._choose(cfg, study, trials=None, top=None, zoo=["001"])
    assert ArchSpec.from_json(mnist.spec).norm == (0.1307, 0.3081)
    assert replace(ArchSpec.from_json(item.spec), norm=(0.1307, 0.3081)).to_json() == mnist.spec


def test_a_fidelity_names_bf16_and_reads_a_missing_precision_as_fp32():
    """Recipes store precision and channels_last only when set: a label says bf16, and a
    record of fp32 compared with a bf16 target says exactly that."""
    from budgetnas.search.verification.records import Fidelity

    plain = Fidelity(3, 100, {"optimizer": "sgd", "lr": 0.05, "batch_size": 128})
    half = Fidelity(3, 100, {**plain.recipe, "precision": "bf16", "channels_last": True})
    assert half.label().endswith(" bf16") and "bf16" not in plain.label()
    assert plain.differences(half) == (
        "precision fp32 (target bf16), channels last False (target True)"
    )
    assert plain.differences(plain) == ""


@pytest.mark.slow
def test_fused_seeds_verify_as_the_separate_seeds_do(tmp_path, synthetic_root, monkeypatch):
    """verify --fuse-seeds trains a network's missing seeds as one fused model: one fused
    training for the seeds, each seed's accuracies those of its separate training (up to a
    validation image flipped by float rounding), nothing written to the results cache."""
    import shutil

    from budgetnas.search.cache.store import ResultCache
    from budgetnas.search.verification import retrain

    out = tmp_path / "run"
    # SGD: on 300 synthetic images AdamW's normalised steps carry a float rounding to 2-4
    # flipped images of 100 in one epoch; fused AdamW against separate AdamW is checked
    # where the weights can be compared (tests/trainers/test_fused.py, adamw-ema)
    cfg = quick_config(synthetic_root, out, caps=(5000,), trials=2, optimizer="sgd")
    run_search(cfg, quiet=True)
    shutil.copytree(out, tmp_path / "copy")
    fused_calls = []
    real = retrain.train_fused
    monkeypatch.setattr(
        retrain, "train_fused", lambda *a, **k: fused_calls.append(k["seeds"]) or real(*a, **k)
    )
    cache = ResultCache(tmp_path / "cache")
    fused = verify_run(out, top=1, seeds=3, fuse_seeds=True, cache=cache)
    assert len(fused_calls) == 1 and len(fused_calls[0]) == 3
    assert not any((tmp_path / "cache").rglob("*.pt*")), "a fused result went into the cache"
    separate = verify_run(tmp_path / "copy", top=1, seeds=3, fuse_seeds=False)
    assert len(fused_calls) == 1  # --no-fuse-seeds: seed by seed
    val_images = open_run(out)[0].data.val_size
    for a, b in zip(fused[0].runs, separate[0].runs, strict=True):
        assert a.seed == b.seed and not a.cached
        assert abs(a.val_acc - b.val_acc) <= 1 / val_images + 1e-9, (a, b)
        assert abs(a.test_acc - b.test_acc) <= 0.01, (a, b)


def test_the_header_names_every_cap_of_a_ladder():
    from budgetnas.search.study.header import caps_text

    assert caps_text((10_000,)) == "cap 10,000 params (10K)"
    assert caps_text((5_000, 10_000, 13_000, 25_000)) == "caps 5K, 10K, 13K, 25K params"
