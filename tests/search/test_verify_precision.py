"""`budgetnas verify --precision`: the run's precision unless given; the precision verified at
is part of the fidelity, so results at two precisions never share a mean."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from budgetnas.search.cli import app
from budgetnas.search.pipeline import run_search
from budgetnas.search.study.runs import open_run
from budgetnas.search.verification import retrain as verify_module
from budgetnas.search.verification.records import stored_results
from budgetnas.trainers import precision as precision_module
from tests.helpers import cli_error, quick_config

runner = CliRunner()


@pytest.fixture(scope="module")
def run(tmp_path_factory, synthetic_root):
    out = tmp_path_factory.mktemp("precision") / "run"
    run_search(quick_config(synthetic_root, out, trials=1, references="none"), quiet=True)
    return out


def _verify(run, *extra: str):
    args = ["verify", str(run), "--top", "1", "--seeds", "1", "--device", "cpu"]
    return runner.invoke(app, [*args, "--train-subset", "200", *extra])


def _records(run) -> dict:
    _, study = open_run(run)
    return {v.store_key: v for v in stored_results(study).values()}


@pytest.mark.slow
def test_verify_takes_the_runs_precision_or_the_one_given(run, monkeypatch):
    recipes = []
    real = verify_module.train
    monkeypatch.setattr(
        verify_module, "train", lambda *a, **k: recipes.append(a[2]) or real(*a, **k)
    )
    result = _verify(run)
    assert result.exit_code == 0, result.stderr
    assert recipes[-1].precision == "fp32" and not recipes[-1].channels_last  # the run's
    result = _verify(run, "--precision", "bf16")
    assert result.exit_code == 0, result.stderr
    assert recipes[-1].precision == "bf16" and recipes[-1].channels_last  # on a CPU
    records = _records(run)
    assert len(records) == 2  # one record per precision: never one mean
    half = [v for v in records.values() if v.fidelity.recipe.get("precision") == "bf16"]
    (other,) = [v for v in records.values() if v not in half]
    assert len(half) == 1 and "precision" not in other.fidelity.recipe  # fp32 is the default
    assert half[0].fidelity.id != other.fidelity.id and "bf16" in half[0].fidelity_label
    assert "bf16" in result.stdout
    # auto: fp32 on a CPU without native bf16 (the record there already: nothing trained)
    monkeypatch.setattr(precision_module, "native_bf16_cpu", lambda: False)
    trained = len(recipes)
    result = _verify(run, "--precision", "auto")
    assert result.exit_code == 0, result.stderr
    assert len(recipes) == trained and len(_records(run)) == 2


def test_a_bad_precision_is_one_line(tmp_path):
    line = cli_error(_verify(tmp_path, "--precision", "fp8"))  # before the run is even read
    assert "--precision must be one of auto, fp32, bf16, got 'fp8'" in line
