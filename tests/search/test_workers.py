"""Several trial processes on one machine share a journal-file study."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial
from typer.testing import CliRunner

from budgetnas.search.cli import app
from budgetnas.search.driver import run_search
from budgetnas.search.run_weights import kept_trials
from budgetnas.search.runs import open_run
from budgetnas.search.storage import fail_orphans, journal_url, open_storage
from tests.helpers import SHARED_SEARCH, quick_config, search_args

runner = CliRunner()


@pytest.mark.slow
def test_two_workers_on_cpu(tmp_path, synthetic_root):
    run = tmp_path / "run"
    args = search_args(synthetic_root, run, "--workers", "2", "--trials", "12", *SHARED_SEARCH)
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    assert "locked" not in result.stderr
    assert (run / "study.journal").is_file() and not (run / "study.db").exists()
    cfg, study = open_run(run)
    trials = study.get_trials()
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert 12 <= len(finished) <= 13
    assert len({t.user_attrs["worker"] for t in trials}) == 2
    kept = kept_trials(trials, cap=cfg.budget, verified=())  # the weights the search keeps
    for t in trials:
        if t.state == TrialState.COMPLETE:
            assert (run / t.user_attrs["weights"]).is_file() or t.number not in kept
            assert t.user_attrs["wall_time_s"] >= t.user_attrs["train_time_s"] > 0
    assert (run / "report.html").is_file()


def test_orphans_of_a_dead_journal_run_are_failed_and_queued(tmp_path):
    study = optuna.create_study(storage=open_storage(journal_url(tmp_path / "j.log")))
    dist = {"x": FloatDistribution(0, 1)}
    study.add_trial(
        create_trial(state=TrialState.COMPLETE, value=1.0, params={"x": 0.1}, distributions=dist)
    )
    orphan = study.ask({"x": FloatDistribution(0, 1)})  # left RUNNING, as by a killed process
    orphan.set_user_attr("cap", 5000)
    orphan.set_user_attr("val_curve", [0.5])
    assert fail_orphans(study) == [orphan.number]
    trials = study.get_trials()
    assert trials[orphan.number].state == TrialState.FAIL
    assert trials[0].state == TrialState.COMPLETE
    queued = [t for t in trials if t.state == TrialState.WAITING]
    assert len(queued) == 1
    assert queued[0].system_attrs["fixed_params"] == trials[orphan.number].params
    assert queued[0].user_attrs == {"cap": 5000}  # its rung, and nothing of the dead run's


@pytest.mark.slow
def test_resume_a_single_process_run_with_two_workers(tmp_path, synthetic_root):
    run = tmp_path / "run"
    shared = dict(zip(SHARED_SEARCH[::2], SHARED_SEARCH[1::2], strict=True))
    options = {k[2:].replace("-", "_"): int(v) for k, v in shared.items()}
    cfg = quick_config(synthetic_root, run, trials=2, **options)
    run_search(cfg, quiet=True)
    result = runner.invoke(
        app, ["search", "--resume", str(run), "--trials", "12", "--workers", "2"]
    )
    assert result.exit_code == 0, result.stderr
    assert (run / "study.db").is_file() and not (run / "study.journal").exists()
    cfg, study = open_run(run)
    assert cfg.workers == 2
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert 12 <= len(finished) <= 13
    assert len({t.user_attrs["worker"] for t in study.trials[2:]}) == 2


def test_a_cpu_search_runs_one_trial_process_per_core_by_default(
    tmp_path, synthetic_root, monkeypatch
):
    """--workers not given: one process per core on a CPU (at most MAX_CPU_WORKERS), which
    a journal file then holds; given, it is what the user said."""
    import budgetnas.search.config as config

    for cores, expected in ((1, 1), (2, 2), (64, config.MAX_CPU_WORKERS)):
        monkeypatch.setattr(config, "usable_cores", lambda cores=cores: cores)
        cfg = config.new_config(
            out=tmp_path / "r", caps=(5000,), data_dir=synthetic_root, device="cpu"
        )
        assert cfg.workers == expected
    assert cfg.storage_url().startswith("journal:")
    cfg = config.new_config(
        out=tmp_path / "r", caps=(5000,), data_dir=synthetic_root, device="cpu", workers=1
    )
    assert cfg.workers == 1 and cfg.storage_url().startswith("sqlite:")


def test_verification_jobs_are_dealt_dearest_first_to_the_least_loaded():
    from budgetnas.search.verify_pool import Share, deal

    jobs = [("trial", 3, 5.0), ("zoo", "002", 9.0), ("trial", 7, 4.0), ("zoo", "001", 6.0)]
    # 002 (9) to the first, 001 (6) to the second, #3 (5) to the second (6 < 9), #7 (4) to
    # the first (9 < 11)
    assert deal(jobs, 2) == [
        Share(trials=(7,), zoo=("002",), cost=13.0),
        Share(trials=(3,), zoo=("001",), cost=11.0),
    ]
    assert deal(jobs, 1) == [Share(trials=(3, 7), zoo=("002", "001"), cost=24.0)]
    assert deal(jobs[:1], 3) == [Share(trials=(3,), cost=5.0)]  # no empty share


@pytest.mark.slow
def test_two_workers_verify_the_front_and_the_references_in_two_processes(tmp_path, synthetic_root):
    """--workers 2: the final verification is dealt to both processes; every network ends
    with every seed, each printed once."""
    run = tmp_path / "run"
    args = search_args(
        synthetic_root,
        run,
        "--workers",
        "2",
        "--trials",
        "4",
        "--rungs",
        "1",
        "--verify-seeds",
        "2",
        "--references",
        "002",
        budget="10k",
    )
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    from budgetnas.search.verified import stored_results

    _, study = open_run(run)
    records = {v.key: v for v in stored_results(study).values()}
    assert "zoo-002" in records and len(records) >= 2
    assert all([r.seed for r in v.runs] == [1, 2] and not v.failed for v in records.values())
