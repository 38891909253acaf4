"""A search killed with SIGKILL mid-trial loses nothing; resume finishes it, retrying the killed
trial on its own rung of the ladder."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from budgetnas.search.study.runs import open_run
from tests.helpers import cli_module, search_args


def _wait(proc, run, deadline_s: float = 120.0):
    """Poll the study until two trials completed and a third reported an epoch."""
    storage = f"sqlite:///{run / 'study.db'}"
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the search ended before it could be killed: " + (
            proc.stderr.read().decode()[-2000:] if proc.stderr else ""
        )
        try:
            trials = optuna.load_study(study_name="budgetnas", storage=storage).trials
        except Exception:  # the study is not created yet
            time.sleep(0.2)
            continue
        done = [t for t in trials if t.state == TrialState.COMPLETE]
        running = [
            t for t in trials if t.state == TrialState.RUNNING and t.user_attrs.get("val_curve")
        ]
        if len(done) >= 2 and running:
            return done, running[0]
        time.sleep(0.1)
    raise AssertionError("no trial was caught in the middle")


@pytest.mark.slow
def test_sigkill_mid_trial_then_resume(tmp_path, synthetic_root):
    run = tmp_path / "run"
    proc = subprocess.Popen(
        cli_module(
            *search_args(
                synthetic_root,
                run,
                "--trials",
                "5",
                "--epochs",
                "6",
                "--train-subset",
                "800",
                "--val-size",
                "200",
                "--batch-size",
                "32",
                "--pruner",
                "none",
                "--rungs",
                "1",
                "--heartbeat",
                "1",
                "--quiet",
                budget="2k,5k",
            )
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        done, running = _wait(proc, run)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    _, study = open_run(run)
    killed = study.trials[running.number]
    assert killed.state == TrialState.RUNNING  # left behind by the dead process
    kept = {
        t.number: (t.values, t.user_attrs["spec"])
        for t in study.trials
        if t.state == TrialState.COMPLETE
    }
    assert len(kept) >= 2

    time.sleep(2.5)  # longer than 2 heartbeats: the dead trial is now stale
    result = subprocess.run(
        cli_module("search", "--resume", str(run), "--quiet"), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr

    _, study = open_run(run)
    trials = study.trials
    for number, (value, spec) in kept.items():  # every trial completed before the kill is there
        assert trials[number].state == TrialState.COMPLETE
        assert (trials[number].values, trials[number].user_attrs["spec"]) == (value, spec)
    assert trials[killed.number].state == TrialState.FAIL  # detected by the heartbeat
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retried) == 1 and retried[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert retried[0].params == killed.params  # the same candidate, trained again
    assert retried[0].number != killed.number
    assert retried[0].user_attrs["cap"] == killed.user_attrs["cap"]  # on the same rung
    assert retried[0].user_attrs.get("spec") == killed.user_attrs.get("spec")
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 5
    assert (run / "report.html").is_file()


@pytest.mark.slow
def test_sigkill_in_the_middle_of_a_rung_then_resume(tmp_path, synthetic_root):
    """Killed while a promoted candidate trains at rung 1: nothing finished is lost, the
    promotion is trained once more and only once, and the search ends verified."""
    run = tmp_path / "run"
    storage = f"sqlite:///{run / 'study.db'}"
    args = search_args(
        synthetic_root,
        run,
        *("--trials", "6", "--rungs", "2", "--epochs", "6", "--train-subset", "800"),
        *("--val-size", "200", "--batch-size", "32", "--pruner", "none", "--heartbeat", "1"),
        *("--references", "none", "--verify-seeds", "1", "--quiet"),
    )
    proc = subprocess.Popen(cli_module(*args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    killed = None
    try:
        while time.monotonic() < deadline and killed is None:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            try:
                trials = optuna.load_study(study_name="budgetnas", storage=storage).trials
            except Exception:
                time.sleep(0.2)
                continue
            for t in trials:
                attrs = t.user_attrs
                if (
                    t.state == TrialState.RUNNING
                    and attrs.get("rung") == 1
                    and attrs.get("val_curve")
                ):
                    os.kill(proc.pid, signal.SIGKILL)
                    killed = t
                    break
            time.sleep(0.1)
    finally:
        proc.kill()
        proc.wait()
    assert killed is not None, "no rung-1 trial was caught in the middle"
    _, study = open_run(run)
    kept = {t.number: t.values for t in study.trials if t.state == TrialState.COMPLETE}

    time.sleep(2.5)  # longer than 2 heartbeats: the dead trial is now stale
    result = subprocess.run(
        cli_module("search", "--resume", str(run), "--quiet"), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    _, study = open_run(run)
    trials = study.trials
    assert all(trials[n].values == v for n, v in kept.items())  # nothing finished is lost
    assert trials[killed.number].state == TrialState.FAIL
    (retried,) = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    assert retried.state == TrialState.COMPLETE
    assert retried.user_attrs["promoted_from"] == killed.user_attrs["promoted_from"]
    assert retried.user_attrs["rung"] == 1
    trained = [
        (t.user_attrs.get("candidate", t.number), t.user_attrs["rung"])
        for t in trials
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and "spec" in t.user_attrs
    ]
    assert len(trained) == len(set(trained))  # no candidate trained twice at one fidelity
    assert sum(1 for _, rung in trained if rung == 0) == 6
    assert any(k.startswith("verify:trial-") for k in study.user_attrs)


@pytest.mark.slow
def test_ctrl_c_during_a_promotion_then_resume(tmp_path, synthetic_root, monkeypatch):
    """Interrupted (KeyboardInterrupt, as Ctrl-C raises it) while a promoted candidate trains
    at rung 1: the trial is not a failure of the candidate, which the resume trains at rung 1
    once, and the promotion holds one slot: the rung's quota still moves up in full."""
    from budgetnas.search.pipeline import run_search
    from budgetnas.search.sampling import objective
    from budgetnas.search.study.runs import read_config
    from tests.helpers import quick_config

    real = objective.train

    def interrupted(spec, data, recipe, *, on_epoch, **kwargs):
        def stop(epoch, acc, loss):
            on_epoch(epoch, acc, loss)
            raise KeyboardInterrupt

        promoted = len(data.train) == 1000  # rung 1 trains on all 1,000 images
        return real(spec, data, recipe, on_epoch=stop if promoted else on_epoch, **kwargs)

    monkeypatch.setattr(objective, "train", interrupted)
    cfg = quick_config(
        synthetic_root,
        tmp_path / "run",
        trials=6,
        epochs=2,
        train_subset=1000,
        rungs=2,
        references="none",
        caps=(10_000,),
    )
    assert [(r.epochs, r.images) for r in cfg.schedule.rungs] == [(1, 667), (2, 1000)]
    with pytest.raises(KeyboardInterrupt):
        run_search(cfg, quiet=True)
    _, study = open_run(cfg.out)
    (stopped,) = [t for t in study.trials if t.state == TrialState.FAIL]
    assert stopped.user_attrs["rung"] == 1 and stopped.user_attrs["interrupted"]
    source = stopped.user_attrs["promoted_from"]

    monkeypatch.setattr(objective, "train", real)
    run_search(read_config(cfg.out), resume=True, quiet=True)
    _, study = open_run(cfg.out)
    trials = study.trials
    (again,) = [t for t in trials if t.system_attrs.get("failed_trial") == stopped.number]
    assert again.state == TrialState.COMPLETE and again.user_attrs["promoted_from"] == source
    promoted = [t for t in trials if t.user_attrs.get("rung") == 1 and t.state != TrialState.FAIL]
    sources = [t.user_attrs["promoted_from"] for t in promoted]
    assert len(sources) == len(set(sources)) == 2  # ceil(6 / 3), the interrupted one among them
    assert sum(1 for t in trials if t.user_attrs.get("rung") == 0) == 6


# ---- a search of several processes: its helpers end with it -----------------------------------

PROC = Path("/proc")


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state, ppid, ...), None if gone."""
    try:
        return (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, ended but not reaped yet, does not)."""
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def _helpers_of(pid: int) -> list[int]:
    """The `worker` processes whose parent is ``pid``."""
    found = []
    for d in PROC.iterdir():
        stat = _stat(int(d.name)) if d.name.isdigit() else None
        if stat is not None and int(stat[1]) == pid:
            try:
                cmd = (d / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"worker" in cmd:
                found.append(int(d.name))
    return found


def _gone_within(pids: list[int], seconds: float) -> list[int]:
    """Those of ``pids`` still running after ``seconds``."""
    deadline = time.monotonic() + seconds
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [p for p in pids if _alive(p)]


def _two_process_search(root: Path, run: Path, *extra: str) -> subprocess.Popen:
    args = search_args(
        root,
        run,
        *("--workers", "2", "--trials", "6", "--rungs", "2", "--epochs", "6"),
        *("--train-subset", "800", "--val-size", "200", "--batch-size", "32"),
        *("--pruner", "none", "--references", "none", "--verify-seeds", "1", *extra),
    )
    return subprocess.Popen(
        cli_module(*args),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=_ctrl_c_as_in_a_terminal,
    )


def _ctrl_c_as_in_a_terminal() -> None:
    """SIGINT to its default, as a terminal's shell starts a command: the tests may run as a
    background job, whose commands inherit SIGINT ignored (and Python then raises no
    KeyboardInterrupt on it: a search would train on through the test's Ctrl-C)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_until(proc: subprocess.Popen, run: Path, found, deadline_s: float = 240.0):
    """Poll the run's journal until ``found(trials)`` returns a trial; returns it."""
    from budgetnas.search.study.storage import journal_url, open_storage

    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        try:
            storage = open_storage(journal_url(run / "study.journal"))
            trials = optuna.load_study(study_name="budgetnas", storage=storage).trials
        except Exception:  # not created yet
            time.sleep(0.2)
            continue
        trial = found(trials)
        if trial is not None:
            return trial
        time.sleep(0.1)
    raise AssertionError("the moment to stop the search was not caught")


def _rung_1_training(trials):
    """A promoted candidate training at rung 1, once both processes have trained."""
    workers = {t.user_attrs.get("worker") for t in trials if t.user_attrs.get("worker")}
    for t in trials:
        attrs = t.user_attrs
        if t.state == TrialState.RUNNING and attrs.get("rung") == 1 and attrs.get("val_curve"):
            return t if len(workers) == 2 else None
    return None


@pytest.mark.slow
@pytest.mark.skipif(not PROC.is_dir(), reason="reads the process table from /proc")
def test_kill_9_of_a_two_process_search_ends_its_helper_then_resume_trains_each_once(
    tmp_path, synthetic_root
):
    """kill -9 of the first process of a --workers 2 search while rung 1 trains: its helper
    ends within seconds (it does not go on sampling and training beside the resume), and the
    resume trains every candidate and every promotion once."""
    from budgetnas.search.schedule.trials import is_searched, lineage, promoted_from, rung_of

    run = tmp_path / "run"
    proc = _two_process_search(synthetic_root, run, "--quiet")
    helpers: list[int] = []
    try:
        _wait_until(proc, run, _rung_1_training)
        helpers = _helpers_of(proc.pid)
        assert len(helpers) == 1, helpers
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert _gone_within(helpers, 5.0) == [], "the helper outlived its search"
    finally:
        proc.kill()
        proc.wait()
        for pid in helpers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)

    result = subprocess.run(
        cli_module("search", "--resume", str(run), "--quiet"), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    _, study = open_run(run)
    trials = study.trials
    done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    trained = [
        (lineage(t), rung_of(t))
        for t in done
        if is_searched(t) and "spec" in t.user_attrs and t.user_attrs.get("duplicate_of") is None
    ]
    assert len(trained) == len(set(trained)), "a candidate was trained twice at one rung"
    assert sum(1 for _, rung in trained if rung == 0) == 6
    promotions = [promoted_from(t) for t in done if promoted_from(t) is not None]
    assert len(promotions) == len(set(promotions)) == 2  # ceil(6 / 3), each once
    assert any(k.startswith("verify:trial-") for k in study.user_attrs)


@pytest.mark.slow
@pytest.mark.skipif(not PROC.is_dir(), reason="reads the process table from /proc")
def test_ctrl_c_of_a_two_process_search_stops_its_helper(tmp_path, synthetic_root):
    """Ctrl-C (SIGINT to the first process alone, as a terminal's reaches it) while the helper
    trains a candidate: the helper is stopped as Ctrl-C would stop it (that trial recorded as
    interrupted, not finished beside a search that has ended), the search ends with exit
    code 130 and no traceback, and the resume finishes it."""
    run = tmp_path / "run"
    # one rung of 16 epochs, long enough that the journal's reader catches the helper
    # mid-trial whichever process trains what (with two rungs, the 2-epoch first rung never
    # has 2 epochs left; a trial of 6 epochs can end between two readings)
    extra = ("--rungs", "1", "--trials", "6", "--epochs", "16", "--train-subset", "1000")
    extra += ("--verify-seeds", "0")  # the resume's end: no race, which is not tested here
    proc = _two_process_search(synthetic_root, run, *extra)
    helpers: list[int] = []
    host = socket.gethostname()
    try:
        _wait_until(proc, run, lambda trials: _helpers_of(proc.pid) or None, 60)
        helpers = _helpers_of(proc.pid)
        assert len(helpers) == 1, helpers

        def helper_mid_trial(trials):
            for t in trials:
                attrs = t.user_attrs
                left = int(attrs.get("recipe", {}).get("epochs", 0)) - len(
                    attrs.get("val_curve") or ()
                )
                mine = attrs.get("worker") == f"{host}:{helpers[0]}"
                # at least 6 epochs left: a reading of the journal takes a while on a busy
                # machine, and the search must still be at work when the Ctrl-C comes
                if t.state == TrialState.RUNNING and mine and attrs.get("val_curve") and left >= 6:
                    return t
            return None

        stopped = _wait_until(proc, run, helper_mid_trial)
        os.kill(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            tail = proc.communicate()[1].decode()[-2000:]
            raise AssertionError(
                f"the search did not end on Ctrl-C; its last lines:\n{tail}"
            ) from None
        stderr = proc.stderr.read().decode()
        assert proc.returncode == 130, stderr
        assert "Traceback" not in stderr, stderr
        assert _gone_within(helpers, 1.0) == [], "the helper outlived its search"
    finally:
        proc.kill()
        proc.wait()
        for pid in helpers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    _, study = open_run(run)
    trial = study.trials[stopped.number]
    assert trial.state == TrialState.FAIL and trial.user_attrs.get("interrupted"), trial
    result = subprocess.run(
        cli_module("search", "--resume", str(run), "--quiet"), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
