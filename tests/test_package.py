"""How the project installs and what reading a run costs."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from budgetnas.search.pipeline import run_search
from tests.helpers import quick_config


def _python(code: str, cwd) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=cwd
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_one_import_package_and_no_generic_top_level_names(tmp_path):
    out = _python(
        """
        import importlib.util, json
        names = ["search", "space", "trainers", "reports",
                 "budgetnas.search", "budgetnas.space", "budgetnas.trainers", "budgetnas.reports"]
        print(json.dumps({n: importlib.util.find_spec(n.split(".")[0]) is not None
                          and importlib.util.find_spec(n) is not None for n in names}))
        """,
        cwd=tmp_path,  # not the repository: only what is installed is importable
    )
    found = json.loads(out)
    assert found == {
        "search": False,
        "space": False,
        "trainers": False,
        "reports": False,
        "budgetnas.search": True,
        "budgetnas.space": True,
        "budgetnas.trainers": True,
        "budgetnas.reports": True,
    }


def test_reading_and_reporting_a_run_does_not_import_training(tmp_path, synthetic_root):
    run = tmp_path / "run"  # with a race at its end: its answer and verdict are read too
    run_search(quick_config(synthetic_root, run, trials=2, verify_seeds=1), quiet=True)
    out = _python(
        f"""
        import json, sys
        from budgetnas.reports.page.run import write_run_reports
        from budgetnas.search.study.runs import open_run
        from budgetnas.search.study.runs import pick_trial
        cfg, study = open_run({str(run)!r})
        write_run_reports(cfg, study)
        pick_trial(study.trials, None, cap=cfg.cap)
        from budgetnas.search.verification.standing import race_lines
        assert race_lines(cfg, study), "no race read"
        heavy = ["budgetnas.trainers.train", "budgetnas.search.sampling.objective",
                 "budgetnas.search.study.driver", "budgetnas.search.verification.retrain",
                 "torchvision"]
        print(json.dumps([m for m in heavy if m in sys.modules]))
        """,
        cwd=tmp_path,
    )
    assert json.loads(out) == []
    assert (run / "report.html").is_file()
