"""The race at the end of a search, run (``search.racing``): its entrants stored once, the
answer and the verdict in the last lines, the report's header and export, a deadline that
cuts it, claims of dead processes dropped."""

from __future__ import annotations

import json
import os
import re
import time

import pytest
from typer.testing import CliRunner

from budgetnas.search.cli import app
from budgetnas.search.pipeline import run_search
from budgetnas.search.study.runs import open_run
from budgetnas.search.verification.racing import CLAIMS_FILE, DEADLINE_ATTR, _claims, race_process
from budgetnas.search.verification.records import Fidelity, SeedRun, Verified, store, stored_results
from budgetnas.search.verification.standing import (
    ACCOUNT_ATTR,
    ENTRANTS_ATTR,
    race_lines,
    race_of,
    target_fidelity,
)
from tests.helpers import quick_config

runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_results_cache(monkeypatch):
    monkeypatch.setenv("BUDGETNAS_CACHE", "off")


@pytest.fixture(scope="module")
def raced(tmp_path_factory, synthetic_root):
    """A quick search with seed 002 as its yardstick, raced at the end (one process)."""
    out = tmp_path_factory.mktemp("raced") / "run"
    cfg = quick_config(
        synthetic_root, out, caps=(10_000,), references="002", verify_seeds=2, race_seeds=3
    )
    run_search(cfg, quiet=True)
    return out


def test_the_race_stores_its_entrants_and_gives_each_its_seeds(raced):
    cfg, study = open_run(raced)
    keys = study.user_attrs[ENTRANTS_ATTR]
    assert "zoo-002" in keys and any(k.startswith("trial-") for k in keys)
    view = race_of(cfg, study)
    for key, e in view.race.entrants.items():
        assert 2 <= e.done <= 3, key  # started with 2, at most --race-seeds 3
        record = view.records[key]
        assert record.fidelity == target_fidelity(cfg, view.items[key].recipe)
    (s,) = view.standings()
    assert s.answer is not None and not s.answer.yardstick
    assert [v.yardstick.key for v in s.verdicts] == ["zoo-002"]
    account = study.user_attrs[ACCOUNT_ATTR]
    trained = sum(len(v.runs) for v in stored_results(study).values())
    assert account["trained"] == trained and account["cached"] == 0 and not account["cut"]
    assert account["fixed_seeds"] == 2 and account["fixed_seconds"] > 0


def test_the_last_lines_and_the_report_say_the_answer_and_the_verdict(raced):
    cfg, study = open_run(raced)
    lines = race_lines(cfg, study)
    assert lines[0].startswith("answer under 10,000: trial ")
    assert (
        lines[1].startswith("verdict under 10,000: ") and "seed 002 (hand-made, 8,530" in lines[1]
    )
    assert lines[-1].startswith("race: ") and "a fixed 2 seeds of the front" in lines[-1]
    result = runner.invoke(app, ["report", str(raced)])
    assert result.exit_code == 0, result.output
    assert result.stderr.strip().splitlines()[-len(lines) :] == lines  # the last word
    page = (raced / "report.html").read_text()
    assert "the race&#x27;s answer" in page and "verdict under 10,000: " in page


def _behind(raced, tmp_path):
    """A copy of ``raced`` whose race says its answer is behind seed 002: seed 002's seeds
    at 99%, every searched entrant's at 50%."""
    import shutil

    run = tmp_path / "behind"
    shutil.copytree(raced, run)
    cfg, study = open_run(run)
    view = race_of(cfg, study)
    for key, record in view.records.items():
        high = 0.99 if key == "zoo-002" else 0.50
        runs = [
            SeedRun(r.seed, high + 0.001 * i, high, r.epochs, r.train_time_s, r.device, r.weights)
            for i, r in enumerate(record.runs)
        ]
        store(study, Verified(**{**record.__dict__, "runs": runs, "failed_now": []}))
    return run


def test_an_answer_behind_a_seed_network_says_so_in_its_last_lines_and_the_header(raced, tmp_path):
    run = _behind(raced, tmp_path)
    result = runner.invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    last = result.stderr.strip().splitlines()
    verdict = [line for line in last if line.startswith("verdict under 10,000: ")]
    assert verdict and verdict[0].startswith(
        "verdict under 10,000: behind seed 002 (hand-made, 8,530 params) by "
    )
    assert re.search(r" by 4\d\.\d\d points on validation \(\d \+ \d seeds\)$", verdict[0])
    page = (run / "report.html").read_text()
    assert "<b style='color:#c00000'>verdict under 10,000: behind seed 002" in page
    # export ships the searched answer all the same, and repeats the verdict
    out = tmp_path / "net.py"
    exported = runner.invoke(app, ["export", str(run), "--out", str(out)])
    assert exported.exit_code == 0, exported.output
    assert "chosen: the race's answer under the cap" in exported.stdout
    (line,) = [x for x in exported.stdout.splitlines() if x.startswith("verdict: ")]
    assert line.startswith("verdict: behind seed 002 (hand-made, 8,530 params) by ")


def test_a_deadline_that_leaves_no_room_cuts_the_race_and_trains_nothing(raced, tmp_path):
    import shutil

    run = tmp_path / "cut"
    shutil.copytree(raced, run)
    cfg, study = open_run(run)
    study.set_user_attr(ENTRANTS_ATTR, [*study.user_attrs[ENTRANTS_ATTR]])
    # a race that wants more: every record cut back to its first seed
    for record in stored_results(study).values():
        store(study, Verified(**{**record.__dict__, "runs": record.runs[:1], "failed_now": []}))
    study.set_user_attr(DEADLINE_ATTR, time.time() + 1.0)
    account = race_process(run)
    assert account == {"trained": 0, "seconds": 0.0, "cached": 0, "cut": True}
    assert all(len(v.runs) == 1 for v in stored_results(study).values())


def test_claims_of_dead_processes_are_dropped(tmp_path):
    import socket
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    claims = {
        "trial-1": {"pid": os.getpid(), "host": host, "since": 0},
        "trial-2": {"pid": dead.pid, "host": host, "since": 0},
        "trial-3": {"pid": 1, "host": "another-machine", "since": 0},
    }
    (tmp_path / CLAIMS_FILE).write_text(json.dumps(claims))
    assert set(_claims(tmp_path)) == {"trial-1", "trial-3"}
    assert _claims(tmp_path / "missing") == {}


def test_verify_seeds_0_skips_the_race(tmp_path, synthetic_root):
    cfg = quick_config(synthetic_root, tmp_path / "run", references="002", verify_seeds=0)
    study = run_search(cfg, quiet=True)
    assert ENTRANTS_ATTR not in study.user_attrs and not stored_results(study)
    assert race_lines(cfg, study) == []


def test_a_resumed_race_trains_only_the_seeds_it_lacks(raced, tmp_path, monkeypatch):
    """Records already at the target count: a race whose every entrant is decided trains
    nothing more when run again."""
    import shutil

    from budgetnas.search.verification import retrain as verify_module

    run = tmp_path / "again"
    shutil.copytree(raced, run)
    trained = []
    real = verify_module.cached_train

    def spy(cache, spec, data, recipe, **kwargs):
        trained.append(recipe.seed)
        return real(cache, spec, data, recipe, **kwargs)

    monkeypatch.setattr(verify_module, "cached_train", spy)
    before = {k: len(v.runs) for k, v in stored_results(open_run(run)[1]).items()}
    race_process(run)
    assert trained == []
    assert {k: len(v.runs) for k, v in stored_results(open_run(run)[1]).items()} == before


def test_fidelity_of_a_race_record_is_the_searchs_target(raced):
    cfg, study = open_run(raced)
    fid = target_fidelity(cfg, cfg.recipe.to_dict())
    assert isinstance(fid, Fidelity) and fid.epochs == cfg.schedule.target.epochs
    assert fid.train_images == cfg.schedule.target.images


@pytest.mark.slow
def test_fused_start_seeds_race_as_the_separate_seeds_do(
    raced, tmp_path, synthetic_root, monkeypatch
):
    """search --fuse-seeds: the race trains each entrant's two start seeds as one fused model
    (one fused training each), each seed within a validation image of its separate training
    in the same search run seed by seed (``raced``, a CPU's default)."""
    from budgetnas.search.verification import retrain

    calls = []
    real = retrain.train_fused
    monkeypatch.setattr(
        retrain, "train_fused", lambda *a, **k: calls.append(list(k["seeds"])) or real(*a, **k)
    )
    out = tmp_path / "run"
    cfg = quick_config(
        synthetic_root,
        out,
        caps=(10_000,),
        references="002",
        verify_seeds=2,
        race_seeds=3,
        fuse_seeds=True,
    )
    run_search(cfg, quiet=True)
    fused, separate = (race_of(*open_run(run)) for run in (out, raced))
    assert set(fused.race.entrants) == set(separate.race.entrants)
    assert len(calls) == len(fused.race.entrants) and all(len(c) == 2 for c in calls)
    val_images = cfg.data.val_size
    for key in fused.race.entrants:
        a, b = fused.records[key].runs[:2], separate.records[key].runs[:2]
        assert [r.seed for r in a] == [r.seed for r in b]
        for x, y in zip(a, b, strict=True):
            assert abs(x.val_acc - y.val_acc) <= 1 / val_images + 1e-9, (key, x, y)
