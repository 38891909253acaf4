"""report.html as a user sees it: rendered by a real headless browser (Chromium), offline.

Skipped where no Chromium is installed (``apt-get install chromium``; CI installs it).
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from budgetnas.reports.page.run import write_run_reports
from budgetnas.search.pipeline import run_search
from tests.helpers import quick_config

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(BROWSER is None, reason="no Chromium here: apt-get install chromium"),
]


def _chromium(*args: str) -> str:
    cmd = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=15000"]
    proc = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_the_report_renders_its_figures_in_a_browser(tmp_path, synthetic_root):
    run = tmp_path / "run"
    cfg = quick_config(synthetic_root, run, caps=(10_000,), trials=6, epochs=2, pruner="banded")
    write_run_reports(cfg, run_search(cfg, quiet=True))
    page = f"file://{run / 'report.html'}"
    dom = _chromium("--dump-dom", page)  # the page after plotly.js drew it
    texts = re.findall(r'data-unformatted="([^"]*)"', dom)
    assert "Validation error vs parameters (log scale, lower is better)" in " ".join(texts)
    assert {"seed 001", "seed 002"} <= set(texts)  # the yardsticks, labelled
    assert "Pareto front (searched)" in texts
    assert any(re.fullmatch(r"\d+\.\d\d%", t) for t in texts)  # error ticks as percentages
    assert dom.count('class="main-svg"') >= 2 * 3  # front, curves, per-block breakdown
    shot = tmp_path / "report.png"
    _chromium("--window-size=1400,2600", f"--screenshot={shot}", page)
    assert shot.stat().st_size > 50_000  # a drawn page, not a blank one
