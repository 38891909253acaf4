"""benchmarks/gpu.sh rehearsed on the CPU at toy sizes: every stage runs end to end, so that a
GPU's minutes go to measuring."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu.sh"


def _run(out: Path, data: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "BUDGETNAS_DATA": str(data), "PYTHON": sys.executable}
    return subprocess.run(
        ["bash", str(SCRIPT), str(out), *args], capture_output=True, text=True, env=env
    )


def test_the_script_refuses_without_data_or_with_a_used_folder(tmp_path):
    empty = tmp_path / "nodata"
    empty.mkdir()
    result = _run(tmp_path / "out", empty, "--device", "cpu", "--toy")
    assert result.returncode == 2 and "BUDGETNAS_DATA" in result.stderr
    used = tmp_path / "used"
    used.mkdir()
    (used / "x").write_text("")
    result = _run(used, empty, "--device", "cpu", "--toy")
    assert result.returncode == 2, result.stderr
    result = _run(tmp_path / "out", empty, "--no-such-option")
    assert result.returncode == 2 and result.stderr.startswith("usage:")


@pytest.mark.slow
def test_every_stage_of_the_gpu_script_runs_on_the_cpu_at_toy_sizes(tmp_path, synthetic_root):
    out = tmp_path / "out"
    result = _run(out, synthetic_root, "--device", "cpu", "--toy")
    stages = (out / "stages.tsv").read_text().splitlines()
    assert result.returncode == 0, result.stderr + "\n".join(stages)
    names = [line.split("\t")[0] for line in stages[1:]]
    assert names == ["device", "bench", "gpu-tests", "ladder", "one-epoch", "export", "summary"]
    assert all(line.split("\t")[1] == "0" for line in stages[1:]), stages
    summary = (out / "summary.txt").read_text()
    assert "toy sizes: a rehearsal, not a measurement" in summary
    assert "(2 candidates at once)" in summary  # the ladder trained two at once
    # both searches ran their race and said how the answer stands against the seed networks
    for run in ("ladder", "one-epoch"):
        assert (out / run / "report.html").is_file()
        assert (out / run / "best.py").is_file() and (out / run / "best.pt").is_file()
    assert summary.count("verified answer") >= 2 or summary.count("answer") >= 2, summary
    # on a CPU the GPU tests are collected and skipped, not missing
    assert "skipped" in (out / "gpu-tests.txt").read_text()
