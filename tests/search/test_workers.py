"""Several trial processes on one machine share a journal-file study."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial
from typer.testing import CliRunner

from budgetnas.search.cli import app
from budgetnas.search.errors import SearchError
from budgetnas.search.handback.run_weights import kept_trials
from budgetnas.search.pipeline import run_search
from budgetnas.search.study.config import CONFIG_FILE
from budgetnas.search.study.runs import CONFIG_ATTR, open_run
from budgetnas.search.study.storage import fail_orphans, journal_url, open_storage
from tests.helpers import SHARED_SEARCH, cli_error, cli_module, quick_config, search_args

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
    kept = kept_trials(trials, cap=cfg.cap, verified=())  # the weights the search keeps
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
    import budgetnas.search.study.options as options
    import budgetnas.search.study.processes as processes

    for cores, expected in ((1, 1), (2, 2), (64, processes.MAX_CPU_WORKERS)):
        monkeypatch.setattr(processes, "usable_cores", lambda cores=cores: cores)
        cfg = options.new_config(
            out=tmp_path / "r", caps=(5000,), data_dir=synthetic_root, device="cpu"
        )
        assert cfg.workers == expected
    assert cfg.storage_url().startswith("journal:")
    cfg = options.new_config(
        out=tmp_path / "r", caps=(5000,), data_dir=synthetic_root, device="cpu", workers=1
    )
    assert cfg.workers == 1 and cfg.storage_url().startswith("sqlite:")


@pytest.mark.slow
def test_two_workers_verify_the_front_and_the_references_in_two_processes(tmp_path, synthetic_root):
    """--workers 2: the race at the end runs in both processes (the seeds of the records
    were trained by two processes, this one and its helper); with --race-seeds 2 every
    network ends with its 2 seeds, each printed once (the helper's lines are on the same
    stderr)."""
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
        "--race-seeds",
        "2",
        "--references",
        "002",
        budget="10k",
    )
    result = subprocess.run(cli_module(*args), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    from budgetnas.search.verification.records import stored_results

    _, study = open_run(run)
    records = {v.key: v for v in stored_results(study).values()}
    assert "zoo-002" in records and len(records) >= 2
    assert all([r.seed for r in v.runs] == [1, 2] and not v.failed for v in records.values())
    # the race ran in two processes, this one and its helper, one seed at a time each (the
    # helper trains what is left when it has started: on tiny networks, maybe nothing)
    assert study.user_attrs["race:account"]["processes"] == 2
    workers = {r.worker for v in records.values() for r in v.runs}
    assert 1 <= len(workers) <= 2, workers
    assert all(w.startswith(f"{socket.gethostname()}:") for w in workers)
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("verify  ")]
    printed = [re.match(r"verify  (.{10}) +[\d,]+  seed (\d+)  ", ln).groups() for ln in lines]
    printed = [(label.strip(), int(seed)) for label, seed in printed]
    assert sorted(printed) == sorted((v.label, s) for v in records.values() for s in (1, 2))


# ---- the processes of a search: the run lock, helpers that end with their search, seeds ---------


def _holder(run, *, code: str = "") -> subprocess.Popen:
    """A process that holds ``run``'s lock (as a search does) until it is killed."""
    script = (
        "import sys, time\n"
        "from budgetnas.search.study.processes import RunLock\n"
        f"RunLock({str(run)!r}).acquire()\n"
        "print('held', flush=True)\n"
        f"{code}\n"
        "time.sleep(120)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.mark.slow
def test_a_resume_is_refused_while_a_search_holds_the_run(tmp_path, synthetic_root):
    """A second `search --resume RUN` while a search runs in RUN: one line naming the holder,
    exit code 1, nothing changed; once the holder is gone, the lock is free."""
    run = tmp_path / "run"
    run.mkdir()
    (run / CONFIG_FILE).write_text(quick_config(synthetic_root, run).to_json())
    holder = _holder(run)
    before = sorted((p.name, p.stat().st_mtime_ns) for p in run.iterdir())
    try:
        line = cli_error(runner.invoke(app, ["search", "--resume", str(run)]))
        host = socket.gethostname()
        assert f"pid {holder.pid} on {host}, since " in line, line
        assert line.endswith("nothing was changed"), line
        since = line.split("since ", 1)[1].split(")", 1)[0]
        assert abs(time.mktime(time.strptime(since, "%Y-%m-%d %H:%M:%S")) - time.time()) < 60
        assert sorted((p.name, p.stat().st_mtime_ns) for p in run.iterdir()) == before
    finally:
        holder.kill()
        holder.wait()
    from budgetnas.search.study.processes import RunLock

    lock = RunLock(run)
    lock.acquire()  # the holder died: its lock went with it
    lock.release()


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="kill -9 is POSIX")
def test_the_helpers_of_a_dead_search_hold_its_run_until_they_end(tmp_path, monkeypatch):
    """A search's helpers hold its lock: killed with them still running (here one that does
    not watch its parent), the run stays refused, with a line that says so, until they end."""
    import budgetnas.search.study.processes as processes

    run = tmp_path / "run"
    run.mkdir()
    code = (
        "from budgetnas.search.study.processes import start_helper\n"
        "p = start_helper([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        "print(p.pid, flush=True)"
    )
    holder = _holder(run, code=code)
    helper_pid = int(holder.stdout.readline())
    try:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        monkeypatch.setattr(processes, "HELPERS_END_S", 0.5)
        with pytest.raises(SearchError) as refused:
            processes.RunLock(run).acquire()
        assert f"(pid {holder.pid} on {socket.gethostname()}, since " in str(refused.value)
        assert "it has ended, its helper processes have not" in str(refused.value)
    finally:
        os.kill(helper_pid, signal.SIGKILL)
    monkeypatch.setattr(processes, "HELPERS_END_S", 10.0)
    lock = processes.RunLock(run)
    lock.acquire()  # waited for the helper to end
    lock.release()
    assert not (run / processes.LOCK_FILE).exists()


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, ended but not yet reaped, does not)."""
    stat = Path(f"/proc/{pid}/stat")
    if stat.parent.parent.is_dir() and Path("/proc/self").exists():
        try:
            return stat.read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
        except OSError:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="kill -9 is POSIX")
def test_a_helper_ends_when_the_process_that_started_it_is_killed():
    """Helpers started by ``start_helper`` that run ``watch_parent`` end within seconds of
    their parent's kill -9: one by Linux's parent-death signal and the pipe on its stdin, one
    by the pipe alone (how it works where there is no prctl)."""
    child = (
        "import sys, time; from budgetnas.search.study.processes import watch_parent; "
        # one write of a whole line: the two helpers share the parent's pipe
        "watch_parent(deathsig={}); sys.stdout.write('watching\\n'); sys.stdout.flush(); "
        "time.sleep(120)"
    )
    parent = (
        "import sys, time; from budgetnas.search.study.processes import start_helper; "
        f"ps = [start_helper([sys.executable, '-c', {child.format(True)!r}]), "
        f"start_helper([sys.executable, '-c', {child.format(False)!r}])]; "
        "print(*(p.pid for p in ps), flush=True); time.sleep(120)"
    )
    proc = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True)
    helpers = [int(pid) for pid in proc.stdout.readline().split()]
    try:
        assert [proc.stdout.readline().strip() for _ in helpers] == ["watching"] * 2
        assert all(_alive(pid) for pid in helpers)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        killed = time.monotonic()
        while any(_alive(pid) for pid in helpers) and time.monotonic() < killed + 5:
            time.sleep(0.05)
        assert not [pid for pid in helpers if _alive(pid)], "a helper outlived its parent"
        print(f"the helpers ended {time.monotonic() - killed:.2f} s after their parent")
    finally:
        for pid in helpers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_each_helper_samples_with_a_seed_of_the_run_seed_and_its_index():
    from budgetnas.search.study.opening import helper_seed, sampler_seed

    seeds = {helper_seed(3, k) for k in (1, 2, 3)}
    assert len(seeds) == 3 and sampler_seed(3, 0) not in seeds  # the first process has 3
    assert helper_seed(3, 1) == helper_seed(3, 1) != helper_seed(4, 1)
    # a resumed search's helpers do not replay the first run's proposals
    assert helper_seed(3, 1, trials_so_far=20) != helper_seed(3, 1)


def test_a_search_starts_its_helpers_with_their_index_and_they_seed_from_it(
    tmp_path, synthetic_root, monkeypatch
):
    """The command line a search gives its helpers carries each one's index (and the trials
    the study held when it started); the `worker` command passes them on, and the helper's
    sampler is seeded with ``helper_seed`` of them: nothing of the host or the pid."""
    import budgetnas.search.study.driver as driver
    import budgetnas.search.study.opening as opening
    import budgetnas.search.study.processes as processes

    commands = []
    monkeypatch.setattr(processes.subprocess, "Popen", lambda cmd, **kw: commands.append(cmd))
    cfg = quick_config(synthetic_root, tmp_path / "run", workers=3, seed=7)
    threads = torch.get_num_threads()
    try:
        processes.spawn_workers(cfg, None, trials_so_far=5)
    finally:
        torch.set_num_threads(threads)  # as the search sets it for its share of the cores
    assert len(commands) == 2
    given = []
    monkeypatch.setattr(processes, "watch_parent", lambda **kw: None)
    monkeypatch.setattr(driver, "run_worker", lambda *a, **kw: given.append(kw))
    for cmd in commands:
        assert cmd[1:4] == ["-m", "budgetnas.search.cli", "worker"]
        result = runner.invoke(app, cmd[3:])
        assert result.exit_code == 0, result.output
    assert [(kw["helper_index"], kw["trials_before"]) for kw in given] == [(1, 5), (2, 5)]

    # the helper seeds its sampler from them (the study: a search's, made without training)
    monkeypatch.undo()
    cfg = quick_config(synthetic_root, tmp_path / "study", seed=7)
    Path(cfg.out).mkdir()
    storage = open_storage(cfg.storage_url())
    study = optuna.create_study(storage=storage, study_name=cfg.study_name)
    study.set_user_attr(CONFIG_ATTR, cfg.to_dict())
    seeds = []

    def load(cfg_, store, seed):
        seeds.append(seed)
        raise KeyboardInterrupt  # enough: nothing is trained

    monkeypatch.setattr(driver, "load_study", load)
    with pytest.raises(KeyboardInterrupt):
        driver.run_worker(
            cfg.storage_url(), cfg.study_name, out=cfg.out, helper_index=2, trials_before=5
        )
    assert seeds == [opening.helper_seed(7, 2, trials_so_far=5)]


@pytest.mark.slow
def test_one_process_the_same_command_twice_samples_the_same_specs_and_accuracies(
    tmp_path, synthetic_root
):
    """What --seed promises with one trial process: the same command twice samples the same
    specs and reaches the same accuracies on a CPU (references included)."""

    def search(name: str) -> list:
        run = tmp_path / name
        args = ("--workers", "1", "--sampler", "nsga2", "--trials", "14", "--seed", "3")
        result = runner.invoke(app, search_args(synthetic_root, run, *args, "--rungs", "1"))
        assert result.exit_code == 0, result.output
        _, study = open_run(run)
        return [(t.user_attrs.get("spec"), t.values, t.state) for t in study.trials]

    a = search("a")
    assert sum(1 for spec, values, _ in a if spec and values) >= 14
    assert search("b") == a
