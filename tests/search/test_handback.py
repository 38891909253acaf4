"""What budgetnas hands back is what it says: a searched network (never a reference), with
the best weights that exist in the run, labelled."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from budgetnas.reports.front.frame import trials_frame
from budgetnas.search.cli import app
from budgetnas.search.study.runs import open_run
from budgetnas.search.verification.records import stored_results
from tests.helpers import search_args

runner = CliRunner()


@pytest.fixture(scope="module")
def ref_on_top(tmp_path_factory, synthetic_root):
    """A study whose best validation trial is a reference network, made as a user makes one
    (on this synthetic data seed 002 beats the three searched candidates)."""
    run = tmp_path_factory.mktemp("handback") / "run"
    args = search_args(
        synthetic_root, run, "--trials", "3", "--epochs", "2", "--seed", "3", "--rungs", "1"
    )
    result = runner.invoke(app, [*args[:2], "10k", *args[3:]])
    assert result.exit_code == 0, result.stderr
    _, study = open_run(run)
    df = trials_frame(study.trials)
    done = df[df["state"] == "complete"].sort_values("val_acc", ascending=False)
    assert done.iloc[0]["reference"] == "002", "the fixture needs a reference on top"
    searched = done[done["reference"].isna()]
    return run, int(searched.iloc[0]["number"]), int(done.iloc[0]["number"]), result.stderr


def _export(run, root, out, *extra):
    args = ["export", str(run), "--out", str(out), "--data-dir", str(root), *extra]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    return " | ".join(result.stdout.splitlines())


def _same_tensors(a: Path, b: Path) -> bool:
    x = torch.load(a, weights_only=True)
    y = torch.load(b, weights_only=True)
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def test_export_ships_the_best_searched_network_and_says_which_weights(
    ref_on_top, synthetic_root, tmp_path
):
    run, best, _, _ = ref_on_top
    line = _export(run, synthetic_root, tmp_path / "best.py")
    assert line.startswith(f"trial {best}: ")
    assert "best validation accuracy of the search under the cap (not verified yet)" in line
    assert "weights: search seed 3 (2 ep x 300 img" in line
    source = (tmp_path / "best.py").read_text()
    assert f"Trial {best} of a budgetnas search on mnist" in source
    assert "Weights: search seed 3, 2 ep x 300 img" in source
    _, study = open_run(run)
    assert _same_tensors(tmp_path / "best.pt", run / study.trials[best].user_attrs["weights"])


def test_best_lines_rows_and_top_k_are_searched_networks(ref_on_top):
    run, best, ref, stderr = ref_on_top
    lines = [line for line in stderr.splitlines() if re.match(r"\s+\d+\s", line)]
    assert lines and all(f"(#{ref})" not in line for line in lines)  # "best so far"
    assert f"(#{best})" in lines[-1]
    rows = pd.read_csv(run / "pareto.csv", dtype={"reference": str})
    front = rows[rows["role"] == "front"]
    assert front["reference"].isna().all() and best in front["number"].tolist()
    assert sorted(rows[rows["role"] == "reference"]["reference"]) == ["001", "002"]
    page = (run / "report.html").read_text()
    assert f"best searched network: trial {best}</b>" in page
    assert "Seed networks trained in this study" in page and ">seed 002<" in page
    from budgetnas.search.verification import retrain as verify_module

    cfg, study = open_run(run)
    chosen = verify_module._choose(cfg, study, trials=None, top=2, zoo=None)
    assert all(v.key.startswith("trial-") for v in chosen)
    assert chosen[0].key == f"trial-{best}"


def test_a_reference_exported_on_request_is_labelled_seed(ref_on_top, synthetic_root, tmp_path):
    run, _, ref, _ = ref_on_top
    line = _export(run, synthetic_root, tmp_path / "ref.py", "--trial", str(ref))
    assert line.startswith("seed 002: 8,530 parameters; chosen: asked for with --trial")
    assert (
        f"Seed network 002 (a hand-made reference, trial {ref})"
        in (tmp_path / "ref.py").read_text()
    )


def test_export_ships_verify_weights_after_a_higher_fidelity(ref_on_top, synthetic_root, tmp_path):
    import shutil

    original, best, _, _ = ref_on_top
    run = tmp_path / "copy"  # the module's run stays as the search left it
    shutil.copytree(original, run)
    args = ["verify", str(run), "--trial", str(best), "--seeds", "2", "--epochs", "3"]
    result = runner.invoke(app, [*args, "--train-subset", "300", "--device", "cpu"])
    assert result.exit_code == 0, result.stderr
    _, study = open_run(run)
    (record,) = [v for v in stored_results(study).values() if v.key == f"trial-{best}"]
    assert record.fidelity.epochs == 3 and [r.seed for r in record.runs] == [0, 1]
    top = max(record.runs, key=lambda r: (r.val_acc, -r.seed))
    for out, extra in (("asked.py", ("--trial", str(best))), ("default.py", ())):
        line = _export(run, synthetic_root, tmp_path / out, *extra)
        assert line.startswith(f"trial {best}: ")
        assert f"weights: verify seed {top.seed} (3 ep x 300 img" in line
        assert f"test accuracy {top.test_acc:.2%}" in line
        assert _same_tensors(tmp_path / out.replace(".py", ".pt"), run / top.weights)
    assert "among the searched networks verified at 3 ep x 300 img" in line


def test_refit_trains_again_on_train_and_validation(
    ref_on_top, synthetic_root, tmp_path, monkeypatch
):
    from budgetnas.trainers import train as train_module

    run, best, _, _ = ref_on_top
    seen = []
    real = train_module.train

    def spy(spec, data, cfg, **kwargs):
        seen.append((len(data.train), cfg.seed, cfg.epochs))
        return real(spec, data, cfg, **kwargs)

    monkeypatch.setattr(train_module, "train", spy)
    line = _export(run, synthetic_root, tmp_path / "refit.py", "--refit")
    assert seen == [(400, 3, 2)]  # 300 training + 100 validation images, the search's seed
    assert "weights: refit on 400 training + validation images as search seed 3" in line
    assert "none after: its images were trained on" in line
    assert "refit on 400 training + validation images" in (tmp_path / "refit.py").read_text()
    _, study = open_run(run)
    assert not _same_tensors(tmp_path / "refit.pt", run / study.trials[best].user_attrs["weights"])
