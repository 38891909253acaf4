"""Resuming and sharing studies: a study's fingerprint decides who may join it, a resume
changes only what does not change results, and a resumed sampler does not replay itself."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

from budgetnas.search.cli import app
from budgetnas.search.pipeline import run_search
from budgetnas.search.sampling.objective import candidate_key
from budgetnas.search.study.opening import differences
from budgetnas.search.study.runs import CONFIG_ATTR, FINGERPRINT_ATTR, open_run
from budgetnas.space.zoo import ZOO
from budgetnas.trainers.recipe import TrainConfig
from tests.helpers import cli_error, quick_config, search_args, write_synthetic_mnist

runner = CliRunner()


def _trial_count(study_name: str, url: str) -> int:
    return len(optuna.load_study(study_name=study_name, storage=url).trials)


@pytest.fixture(scope="module")
def shared(tmp_path_factory, synthetic_root):
    """A finished search whose study lives in a storage named by --storage."""
    base = tmp_path_factory.mktemp("shared")
    url = f"sqlite:///{base / 'shared.db'}"
    first = runner.invoke(
        app, search_args(synthetic_root, base / "a", "--trials", "2", "--storage", url)
    )
    assert first.exit_code == 0, first.stderr
    return base, url


def test_a_search_with_other_settings_does_not_join_the_study(shared, synthetic_root):
    base, url = shared
    before = _trial_count("budgetnas", url)
    args = search_args(synthetic_root, base / "b", "--trials", "4", "--storage", url)
    line = cli_error(runner.invoke(app, [*args, "--label-smoothing", "0.1", "--val-size", "120"]))
    assert line == (
        f"error: study 'budgetnas' in {url} holds a search with other settings "
        "(data.val_size: 100 there, 120 here; recipe.label_smoothing: 0.0 there, 0.1 here); "
        "choose another --study"
    )
    assert _trial_count("budgetnas", url) == before and not (base / "b").exists()


def test_a_search_with_the_same_settings_does_not_join_it_either(shared, synthetic_root):
    base, url = shared
    before = _trial_count("budgetnas", url)
    args = search_args(synthetic_root, base / "c", "--trials", "2", "--storage", url)
    line = cli_error(runner.invoke(app, args))
    assert line == (
        f"error: study 'budgetnas' in {url} already exists; add processes to it with "
        "`budgetnas worker --storage URL --study budgetnas`, or choose another --study"
    )
    assert _trial_count("budgetnas", url) == before and not (base / "c").exists()
    other = runner.invoke(app, [*args, "--study", "second"])  # a new study beside it is fine
    assert other.exit_code == 0, other.stderr
    assert _trial_count("second", url) == 2 and _trial_count("budgetnas", url) == before


def test_a_worker_on_other_data_is_refused(shared, tmp_path):
    base, url = shared
    other = write_synthetic_mnist(tmp_path / "other", n_train=900, n_test=50)
    result = runner.invoke(
        app,
        ["worker", "--storage", url, "--out", str(tmp_path / "w"), "--data-dir", str(other)],
    )
    line = cli_error(result)
    assert "differ from the data the study was searched on" in line
    assert "point --data-dir at the same files" in line


@pytest.fixture
def local_run(tmp_path, synthetic_root):
    run = tmp_path / "run"
    run_search(quick_config(synthetic_root, run, trials=2), quiet=True)
    return run


@pytest.mark.parametrize(
    "extra, refused",
    [
        (["--epochs", "3"], "--epochs"),
        (["--lr", "0.2", "--budget", "10k"], "--budget, --lr"),
        (["--pruner", "median"], "--pruner"),
        (["--seed", "4"], "--seed"),
    ],
)
def test_resume_refuses_flags_that_change_results(local_run, extra, refused):
    before = (local_run / "config.json").read_text()
    line = cli_error(runner.invoke(app, ["search", "--resume", str(local_run), *extra]))
    allowed = (
        "--trials, --timeout, --budget-time, --budget-epochs, --device, --workers, --concurrent, "
        "--data-dir, --data, --verify-seeds, --race-seeds, --fuse-seeds"
    )
    assert line == (
        f"error: --resume continues a run with its stored settings; {refused} cannot be "
        f"changed (allowed with --resume: {allowed})"
    )
    assert (local_run / "config.json").read_text() == before


def test_resume_applies_the_flags_that_do_not(local_run, synthetic_root):
    result = runner.invoke(
        app,
        [
            "search",
            "--resume",
            str(local_run),
            "--trials",
            "3",
            "--timeout",
            "600",
            "--device",
            "cpu",
            "--data-dir",
            str(synthetic_root),
        ],
    )
    assert result.exit_code == 0, result.stderr
    cfg, study = open_run(local_run)
    assert (cfg.trials, cfg.timeout, cfg.device) == (3, 600.0, "cpu")
    assert len(study.trials) == 3


def test_resume_with_an_edited_config_is_refused(local_run):
    path = local_run / "config.json"
    config = json.loads(path.read_text())
    config["recipe"]["lr"] = 0.5
    path.write_text(json.dumps(config))
    line = cli_error(runner.invoke(app, ["search", "--resume", str(local_run)]))
    assert line == (
        f"error: {path} does not match its study's settings (recipe.lr: 0.03 there, 0.5 here); "
        "nothing was run"
    )
    _, study = open_run(local_run)
    assert len(study.trials) == 2


@pytest.mark.slow
def test_resumed_sampler_proposes_nothing_the_study_holds(tmp_path, synthetic_root):
    run = tmp_path / "run"
    study = run_search(quick_config(synthetic_root, run, trials=3), quiet=True)
    before = {t.user_attrs["key"] for t in study.trials}
    params_before = [t.params for t in study.trials]
    result = runner.invoke(app, ["search", "--resume", str(run), "--trials", "6"])
    assert result.exit_code == 0, result.stderr
    _, study = open_run(run)
    resumed = study.trials[3:]
    assert len(resumed) == 3
    assert all(t.params not in params_before for t in resumed)  # what the sampler proposed
    assert not {t.user_attrs["key"] for t in resumed} & before
    assert all(t.user_attrs.get("duplicate_of") is None for t in resumed)


def test_fingerprint_and_candidate_key_cover_the_data(tmp_path, synthetic_root):
    a = quick_config(synthetic_root, tmp_path / "a")
    b = quick_config(synthetic_root, tmp_path / "b", train_subset=200, split_seed=3)
    assert differences(a.fingerprint(), b.fingerprint()) == [
        "data.split_seed: 0 there, 3 here",
        "data.train_subset: 300 there, 200 here",
        "rungs: ([1, 300],) there, ([1, 200],) here",  # the target fidelity's images
    ]
    assert differences(a.fingerprint(), a.fingerprint()) == []
    spec, recipe = ZOO["001"].spec, TrainConfig()
    key_a = candidate_key(spec, recipe, a.data.fingerprint())
    assert key_a != candidate_key(spec, recipe, b.data.fingerprint())
    assert key_a == candidate_key(spec, recipe, a.data.fingerprint())


def test_the_fingerprint_covers_how_candidates_are_chosen(local_run):
    cfg, study = open_run(local_run)
    stored = study.user_attrs[FINGERPRINT_ATTR]
    assert (stored["sampler"], stored["pruner"]) == ("motpe", "none")
    assert stored["references"] == list(cfg.references) != []
    changes = [("sampler", "random"), ("pruner", "banded"), ("references", ["002"])]
    for key, value in [*changes, ("sizing", "sampler")]:
        path = local_run / "config.json"
        before = path.read_text()
        path.write_text(json.dumps({**json.loads(before), key: value}))
        line = cli_error(runner.invoke(app, ["search", "--resume", str(local_run)]))
        assert line.startswith(f"error: {path} does not match its study's settings ({key}")
        path.write_text(before)
    assert len(open_run(local_run)[1].trials) == 2


def test_a_study_of_an_earlier_version_is_not_resumed(local_run):
    _, study = open_run(local_run)
    old = {**study.user_attrs[FINGERPRINT_ATTR], "version": 1}
    study.set_user_attr(FINGERPRINT_ATTR, old)
    line = cli_error(runner.invoke(app, ["search", "--resume", str(local_run)]))
    assert "its study was made by an earlier budgetnas (settings version 1" in line
    assert len(open_run(local_run)[1].trials) == 2


def test_resuming_on_other_data_names_the_runs_data_and_the_given_one(tmp_path, synthetic_root):
    """--data on a resume points at the run's own images, moved: an MNIST run given an .npz,
    or a folder run given an .npz, is one line naming both, and the run is left as it was."""
    import numpy as np

    from budgetnas.search.study.options import new_config
    from tests.helpers import shapes_arrays, write_image_folder

    npz = tmp_path / "x.npz"
    np.savez(npz, x=np.zeros((120, 8, 8), np.uint8), y=np.arange(120) % 2)
    x, y = shapes_arrays(10, size=16, classes=3)
    folder = write_image_folder(tmp_path / "images", x, y)
    runs = {
        "the mnist data set": quick_config(synthetic_root, tmp_path / "mnist"),
        f"the folder {folder}": new_config(
            out=tmp_path / "own", caps=(25_000,), path=folder, device="cpu"
        ),
    }
    for theirs, cfg in runs.items():
        run = Path(cfg.out)
        run.mkdir()
        (run / "config.json").write_text(cfg.to_json())
        args = ["search", "--resume", str(run), "--data", str(npz), "--trials", "9"]
        line = cli_error(runner.invoke(app, args))
        assert line == (
            f"error: {run} was searched on {theirs}, not on the .npz {npz}: --data with "
            "--resume points at the run's own images where they have moved; search other "
            "data in a new run (--out)"
        )
        assert [p.name for p in run.iterdir()] == ["config.json"]
        assert (run / "config.json").read_text() == cfg.to_json()


def test_relative_paths_are_stored_absolute(tmp_path, synthetic_root, monkeypatch):
    import shutil

    shutil.copytree(synthetic_root, tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    first = runner.invoke(app, search_args(Path("data"), Path("run"), "--trials", "1"))
    assert first.exit_code == 0, first.stderr
    shutil.copytree(tmp_path / "data", tmp_path / "moved")
    again = runner.invoke(
        app, ["search", "--resume", "run", "--trials", "2", "--data-dir", "moved"]
    )
    assert again.exit_code == 0, again.stderr
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    cfg, study = open_run(tmp_path / "run")
    for config in (saved, study.user_attrs[CONFIG_ATTR]):
        assert config["out"] == str(tmp_path / "run")
        assert config["data"]["data_dir"] == str(tmp_path / "moved")


def _drive_nothing(monkeypatch) -> list:
    """Replace the driver's trial loop: each call records the study's trials as it found
    them, and runs nothing."""
    from budgetnas.search.study import driver

    seen = []
    monkeypatch.setattr(
        driver, "_drive", lambda cfg, study, *a, **k: seen.append(study.get_trials())
    )
    return seen


def test_resume_fails_the_dead_runs_trial_at_once_in_its_own_sqlite_file(
    tmp_path, synthetic_root, monkeypatch
):
    """A run killed mid-trial left it RUNNING, its heartbeat fresh; nothing else holds the
    run folder's own study.db, so the resume fails that trial and queues its candidate again
    before the first trial starts, without waiting for the heartbeat to go stale."""
    from optuna.trial import TrialState

    from budgetnas.search.study.runs import read_config

    seen = _drive_nothing(monkeypatch)
    run = tmp_path / "run"
    run_search(quick_config(synthetic_root, run, trials=2, references="none"), quiet=True)
    _, study = open_run(run)
    assert (run / "study.db").is_file()  # the default storage
    with pytest.warns(UserWarning, match="Heartbeat"):  # Optuna's: asked outside optimize
        dead = study.ask()
    dead.set_user_attr("rung", 0)
    dead.set_user_attr("cap", 5000)
    study._storage.record_heartbeat(dead._trial_id)  # beating a moment ago
    run_search(read_config(run), resume=True, quiet=True)
    trials = seen[-1]
    assert trials[dead.number].state == TrialState.FAIL
    (copy,) = [t for t in trials if t.state == TrialState.WAITING]
    assert copy.system_attrs["failed_trial"] == dead.number
    assert (copy.user_attrs["rung"], copy.user_attrs["cap"]) == (0, 5000)


def test_a_new_study_names_its_objectives_and_one_without_names_still_resumes(
    tmp_path, synthetic_root, monkeypatch
):
    from budgetnas.search.study import driver
    from budgetnas.search.study.runs import read_config

    _drive_nothing(monkeypatch)
    run = tmp_path / "run"
    run_search(quick_config(synthetic_root, run, references="none"), quiet=True)
    assert open_run(run)[1].metric_names == ["validation accuracy", "parameters"]
    single = tmp_path / "single"
    run_search(quick_config(synthetic_root, single, sampler="tpe", references="none"), quiet=True)
    assert open_run(single)[1].metric_names == ["validation accuracy"]
    # a study made before its objectives were named resumes as it is
    monkeypatch.setattr(driver, "name_metrics", lambda study, sampler: None)
    unnamed = tmp_path / "unnamed"
    run_search(quick_config(synthetic_root, unnamed, references="none"), quiet=True)
    monkeypatch.undo()
    seen = _drive_nothing(monkeypatch)
    run_search(read_config(unnamed), resume=True, quiet=True)
    assert len(seen) == 1 and open_run(unnamed)[1].metric_names is None
