"""Every user mistake ends as one line on stderr and a non-zero exit code."""

from __future__ import annotations

import re
import subprocess

import pytest
from typer.testing import CliRunner

from budgetnas.search.cli import app
from tests.helpers import cli_error, cli_module, search_args

runner = CliRunner()


def _error(args: list[str]) -> str:
    result = runner.invoke(app, args)
    return cli_error(result)


@pytest.mark.parametrize("budget", ["abc", "10x", "-5", "0", "1.5", "", "12,000"])
def test_bad_budget(budget, tmp_path):
    msg = _error(["search", "--budget", budget, "--out", str(tmp_path / "run")])
    assert "budget" in msg
    assert not (tmp_path / "run").exists()


def test_budget_below_the_smallest_network(tmp_path):
    msg = _error(["search", "--budget", "100", "--out", str(tmp_path / "run")])
    assert "smallest network the space can build (262 parameters)" in msg


def test_missing_data(tmp_path):
    msg = _error(
        [
            "search",
            "--budget",
            "10k",
            "--data-dir",
            str(tmp_path / "empty"),
            "--out",
            str(tmp_path / "run"),
        ]
    )
    assert "data not found in" in msg and "train-images-idx3-ubyte" in msg


def test_unknown_dataset(tmp_path):
    msg = _error(["search", "--budget", "10k", "--dataset", "cifar", "--out", str(tmp_path / "r")])
    assert "unknown dataset 'cifar'" in msg


def test_unknown_device(tmp_path, synthetic_root):
    msg = _error(search_args(synthetic_root, tmp_path / "r", "--device", "tpu"))
    assert "unknown device 'tpu'" in msg


@pytest.mark.parametrize("command", ["report", "export"])
def test_run_folder_that_does_not_exist(command, tmp_path):
    args = [command, str(tmp_path / "nope")] + (
        ["--out", str(tmp_path / "m.py")] if command == "export" else []
    )
    assert "does not exist" in _error(args)


def test_run_folder_without_a_run(tmp_path):
    assert "holds no budgetnas run" in _error(["report", str(tmp_path)])


def test_missing_budget_and_out(tmp_path):
    assert "--budget is required" in _error(["search", "--out", str(tmp_path / "r")])
    assert "--out is required" in _error(["search", "--budget", "10k"])


def test_zoo_lists_every_seed_and_prints_specs():
    result = runner.invoke(app, ["zoo"])
    assert result.exit_code == 0
    for count in ("12,400", "9,798", "8,530", "16,966", "23,398"):
        assert count in result.stdout
    spec = runner.invoke(app, ["zoo", "--spec", "001"])
    assert spec.exit_code == 0 and '"kind": "transition"' in spec.stdout
    assert "no zoo entry '999'" in _error(["zoo", "--spec", "999"])


def test_console_script_exit_code_and_one_line(tmp_path):
    proc = subprocess.run(
        cli_module("search", "--budget", "ten", "--out", str(tmp_path)),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "error: bad budget 'ten': write a parameter count such as 10000, 10k, 12.5k or 1.2M"
    ]


def test_help_shows_the_library_defaults():
    """Defaults live in the library; --help must still show them (not swallow "[...]")."""
    from budgetnas.search.study.config import SearchConfig
    from budgetnas.trainers.recipe import TrainConfig

    result = runner.invoke(app, ["search", "--help"], terminal_width=200)
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert f"[default: {SearchConfig.trials}]" in text
    assert f"epochs per candidate [default: {TrainConfig.epochs}]" in text
    assert f"[default: {TrainConfig.batch_size}; 64 with --epochs 1]" in text
    assert "[default: none]" in text
    for command in ("search", "verify", "export", "worker", "report", "bench", "count", "zoo"):
        page = runner.invoke(app, [command, "--help"], terminal_width=200).output
        options = re.split(r"\n  (?=-)", page.split("Options:")[1])  # an option starts a line
        for option in filter(str.strip, options):
            if option.lstrip().startswith("--help"):
                continue
            shown = "default" in option or "required" in option
            assert shown, f"{command}: {option.split()[0]} shows neither default nor required"
