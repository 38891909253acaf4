"""search -> report -> export on data sets small enough for a CPU test run."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from budgetnas.reports.front.pareto import pareto_front
from budgetnas.search.cli import app
from budgetnas.search.handback.export import export_trial
from budgetnas.search.pipeline import run_search
from budgetnas.search.study.runs import open_run
from budgetnas.trainers import data as data_module
from tests.helpers import quick_config, search_args

runner = CliRunner()

# one rung: these tests are of a single-fidelity search (rungs have their own tests)
QUICK = [
    "--train-subset",
    "400",
    "--val-size",
    "200",
    "--batch-size",
    "32",
    "--epochs",
    "2",
    "--rungs",
    "1",
]


def _search(tmp_path: Path, data_root: Path, *extra: str) -> Path:
    run = tmp_path / "run"
    result = runner.invoke(app, search_args(data_root, run, *extra))
    assert result.exit_code == 0, result.stderr
    return run


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory, synthetic_root) -> Path:
    return _search(tmp_path_factory.mktemp("e2e"), synthetic_root, "--trials", "6", *QUICK)


def test_run_folder_holds_study_reports_and_weights(synthetic_run):
    for name in ("config.json", "study.db", "trials.csv", "pareto.csv", "report.html"):
        assert (synthetic_run / name).is_file(), name
    cfg, study = open_run(synthetic_run)
    assert cfg.cap == 5000
    finished = [t for t in study.trials if t.state != optuna.trial.TrialState.FAIL]
    assert len(finished) == 6
    trials = pd.read_csv(synthetic_run / "trials.csv")
    done = trials[trials["state"] == "complete"]
    assert len(done) >= 1
    assert (done["params"] <= 5000).all()
    front = set(pareto_front(trials, cap=5000)["number"])  # whose weights the run keeps
    assert front
    for t in study.trials:
        if t.state == optuna.trial.TrialState.COMPLETE:
            kept = (synthetic_run / t.user_attrs["weights"]).is_file()
            assert kept == (t.number in front or bool(t.user_attrs.get("reference"))), t.number
            assert len(t.user_attrs["val_curve"]) == 2
            assert t.user_attrs["device"] == "cpu"
            assert t.user_attrs["train_time_s"] > 0


def test_pareto_csv_is_the_front_of_trials_csv(synthetic_run):
    trials = pd.read_csv(synthetic_run / "trials.csv")
    rows = pd.read_csv(synthetic_run / "pareto.csv")
    front = rows[rows["role"] == "front"]
    assert front["number"].tolist() == pareto_front(trials, cap=5000)["number"].tolist()


def test_report_is_self_contained(synthetic_run):
    page = (synthetic_run / "report.html").read_text()
    assert re.findall(r"<script[^>]*\bsrc=", page) == []  # nothing fetched: opens offline
    assert "plotly.js v" in page or "plotly.js" in page[:2_000_000]  # the library is inline
    assert page.count("Plotly.newPlot") >= 3  # front, curves, per-block breakdown
    assert "Pareto front" in page
    (synthetic_run / "report.html").unlink()
    assert runner.invoke(app, ["report", str(synthetic_run)]).exit_code == 0
    assert (synthetic_run / "report.html").is_file()


@pytest.mark.slow
def test_export_in_a_fresh_interpreter_with_only_torch(synthetic_run, synthetic_root, tmp_path):
    res = export_trial(synthetic_run, out=tmp_path / "mynet.py", data_dir=synthetic_root)
    _, study = open_run(synthetic_run)
    trial = study.trials[res.trial]
    assert res.params == trial.user_attrs["params"]
    script = textwrap.dedent(
        f"""
        import json, struct, sys
        import torch
        sys.path.insert(0, {str(tmp_path)!r})
        import mynet
        net = mynet.load()
        raw = {str(synthetic_root / "MNIST" / "raw")!r}
        def idx(name):
            data = open(raw + "/" + name, "rb").read()
            ndim = data[3]
            dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
            body = bytearray(data[4 + 4 * ndim :])
            return torch.frombuffer(body, dtype=torch.uint8).reshape(dims)
        x = idx("t10k-images-idx3-ubyte").unsqueeze(1).float() / 255
        y = idx("t10k-labels-idx1-ubyte").long()
        with torch.no_grad():
            acc = (net(x).argmax(1) == y).sum().item() / len(y)
        ours = ("budgetnas", "space", "search", "trainers", "reports", "optuna", "torchvision")
        leaked = sorted(m for m in ours if m in sys.modules)
        print(json.dumps({{"num_params": mynet.NUM_PARAMS,
                          "numel": sum(p.numel() for p in net.parameters()),
                          "acc": acc, "leaked": leaked}}))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-I", "-c", script], capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["leaked"] == []
    assert out["num_params"] == out["numel"] == trial.user_attrs["params"]
    assert out["acc"] == res.test_acc


def test_export_refuses_to_overwrite_and_bad_trials(synthetic_run, synthetic_root, tmp_path):
    out = tmp_path / "net.py"
    args = ["export", str(synthetic_run), "--out", str(out), "--data-dir", str(synthetic_root)]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.stderr
    assert "test accuracy" in first.stdout
    before = out.read_bytes()
    again = runner.invoke(app, args)
    assert again.exit_code == 1 and "pass --force to overwrite" in again.stderr
    assert out.read_bytes() == before
    assert runner.invoke(app, [*args, "--force"]).exit_code == 0
    missing = runner.invoke(app, [*args, "--force", "--trial", "999"])
    assert missing.exit_code == 1 and "trial 999 does not exist" in missing.stderr


def test_existing_run_needs_resume(synthetic_run, synthetic_root):
    result = runner.invoke(app, search_args(synthetic_root, synthetic_run))
    assert result.exit_code == 1 and "--resume" in result.stderr


def test_resume_continues_to_the_trial_count(tmp_path, synthetic_root):
    run = _search(tmp_path, synthetic_root, "--trials", "2", *QUICK)
    result = runner.invoke(app, ["search", "--resume", str(run), "--trials", "4"])
    assert result.exit_code == 0, result.stderr
    _, study = open_run(run)
    assert len(study.trials) == 4


@pytest.mark.slow
def test_same_seed_same_search_past_the_startup_trials(tmp_path, synthetic_root):
    """14 trials: past TPE's 10 random startup trials, so the model-based proposals and the
    banded pruner are part of what must repeat, values and prunings alike."""

    def search(name):
        cfg = quick_config(
            synthetic_root, tmp_path / name, trials=14, epochs=3, pruner="banded", seed=1, rungs=1
        )
        study = run_search(cfg, quiet=True)
        return [(t.state, t.user_attrs.get("spec"), t.intermediate_values) for t in study.trials]

    a = search("a")
    assert len(a) >= 14
    pruned = [t for t in a if t[0] == optuna.trial.TrialState.PRUNED and t[1] is not None]
    assert pruned, "the pruner never cut a trial: the test would not cover it"
    assert len({spec for _, spec, _ in a[10:]} - {spec for _, spec, _ in a[:10]}) >= 1
    assert search("b") == a


@pytest.mark.slow
def test_real_mnist_search_and_export(tmp_path, mnist_root):
    run = tmp_path / "mnist"
    result = runner.invoke(
        app,
        [
            "search",
            "--budget",
            "10k",
            "--data-dir",
            str(mnist_root),
            "--out",
            str(run),
            "--trials",
            "3",
            "--epochs",
            "1",
            "--train-subset",
            "2000",
            "--val-size",
            "1000",
            "--batch-size",
            "64",
            "--device",
            "cpu",
            "--rungs",
            "1",
        ],
    )
    assert result.exit_code == 0, result.stderr
    trials = pd.read_csv(run / "trials.csv", dtype={"reference": str})
    done = trials[(trials["state"] == "complete") & trials["reference"].isna()]
    assert len(done) == 3 and (done["params"] <= 10_000).all()
    res = export_trial(run, out=tmp_path / "best.py", data_dir=mnist_root)
    # the search verified its front with new seeds: export takes the best verified searched
    # network (mean validation accuracy, then fewer parameters) ...
    pareto = pd.read_csv(run / "pareto.csv", dtype={"reference": str})
    # (the race's entrants off the front too: an aim's best may be the answer)
    searched = pareto["role"].isin(["front", "verified"])
    verified = pareto[searched & pareto["verified_val_mean"].notna()]
    # the race: every entrant 2 new seeds or more, the answer (the best mean) --verify-seeds 3
    assert len(verified) >= 1 and (verified["verified_seeds"] >= 2).all()
    best = verified.sort_values(["verified_val_mean", "params"], ascending=[False, True]).iloc[0]
    assert best["verified_seeds"] >= 3
    assert (res.trial, res.label) == (int(best["number"]), f"trial {int(best['number'])}")
    # ... and ships the best validation weights among the search's and the verify seeds' (all
    # trained at the same fidelity here): no worse than the mean, nor than the search's own
    search_val = float(done.set_index("number").loc[res.trial, "val_acc"])
    assert res.val_acc == res.shipped.val_acc
    assert res.val_acc >= max(search_val, best["verified_val_mean"] - 1e-9)
    # the reported test accuracy is that of the written module on the 10,000 test images
    from budgetnas.search.handback.export import import_module_from
    from budgetnas.trainers.data import load_test

    net = import_module_from(tmp_path / "best.py").load()
    test = load_test("mnist", data_dir=mnist_root)
    with torch.no_grad():
        hits = (net(test.x.float() / 255).argmax(1) == test.y).sum().item()
    assert len(test) == 10_000 and res.test_acc == hits / 10_000


@pytest.mark.slow  # trains for more than ten seconds on 2 cores
def test_a_search_reads_the_test_split_only_to_report_at_the_end(
    tmp_path, synthetic_root, monkeypatch
):
    """No candidate, promotion or pruning decision can see the test split: it is read only
    once every trial of the schedule has finished, by the final verification (which chooses
    nothing: export picks by validation). Without the verification it is never read."""
    from budgetnas.search.study.guards import ScheduleGuard

    read = data_module._torchvision_split
    reads = []

    def guarded(info, root, *, train, download):
        if not train:
            cfg, study = open_run(run)
            job = ScheduleGuard(cfg, None).job(study).kind
            running = [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
            reads.append((job, len(running)))
            if verify_seeds == "0":
                raise AssertionError("the search read the test split")
        return read(info, root, train=train, download=download)

    monkeypatch.setattr(data_module, "_torchvision_split", guarded)
    for verify_seeds in ("0", "1"):
        run = tmp_path / f"run{verify_seeds}"
        args = ["--trials", "12", "--epochs", "2", "--rungs", "2", "--verify-seeds", verify_seeds]
        result = runner.invoke(app, search_args(synthetic_root, run, *args))
        assert result.exit_code == 0, result.stderr
        assert (run / "report.html").is_file()
    assert reads and set(reads) == {("done", 0)}  # the verification, after the schedule
    verify_seeds, run = "0", tmp_path / "run0"
    with pytest.raises(AssertionError, match="read the test split"):  # the guard does bite
        export_trial(run, out=tmp_path / "m.py")
