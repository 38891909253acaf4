"""Two workers on one study in a real PostgreSQL server."""

from __future__ import annotations

import os
import subprocess
import time
import uuid

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from budgetnas.reports.front.frame import trials_frame
from budgetnas.reports.front.pareto import pareto_front
from tests.helpers import SHARED_SEARCH, cli_module, search_args


@pytest.fixture
def pg_url():
    url = os.environ.get("BUDGETNAS_TEST_POSTGRES")
    if not url:
        pytest.skip("BUDGETNAS_TEST_POSTGRES is not set: no PostgreSQL server for this test")
    psycopg = pytest.importorskip("psycopg")
    name = f"budgetnas_{uuid.uuid4().hex[:10]}"
    conn = psycopg.connect(url, autocommit=True)
    conn.cursor().execute(f"CREATE DATABASE {name}")
    yield url.rsplit("/", 1)[0] + "/" + name
    conn.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    conn.close()


@pytest.mark.slow
def test_two_workers_share_one_study(tmp_path, synthetic_root, pg_url):
    first = subprocess.Popen(
        cli_module(
            *search_args(
                synthetic_root,
                tmp_path / "a",
                *("--storage", pg_url, "--study", "shared", "--trials", "16"),
                *SHARED_SEARCH,
                "--quiet",
            )
        ),
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while True:  # the worker joins once the study exists
        try:
            optuna.load_study(study_name="shared", storage=pg_url)
            break
        except KeyError:
            assert time.monotonic() < deadline and first.poll() is None, first.stderr.read()
            time.sleep(0.2)
    second = subprocess.run(
        cli_module(
            "worker",
            "--storage",
            pg_url,
            "--study",
            "shared",
            "--out",
            str(tmp_path / "b"),
            "--data-dir",
            str(synthetic_root),
            "--device",
            "cpu",
            "--quiet",
        ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert second.returncode == 0, second.stderr
    assert first.wait(timeout=300) == 0, first.stderr.read()

    study = optuna.load_study(study_name="shared", storage=pg_url)
    trials = study.get_trials()
    numbers = [t.number for t in trials]
    assert sorted(numbers) == list(range(len(trials)))  # no number used twice, none skipped
    assert len({t._trial_id for t in trials}) == len(trials)  # every trial recorded once
    assert all(t.state != TrialState.RUNNING for t in trials)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert 16 <= len(finished) <= 17  # the last trial of the other worker may finish late
    # every trial a process took says which (an idle one too: it found nothing left to do)
    assert all(t.user_attrs.get("worker") for t in trials if t.state != TrialState.WAITING)
    trained = [t for t in finished if not t.user_attrs.get("idle")]
    assert len({t.user_attrs["worker"] for t in trained}) == 2  # both processes trained trials

    # the front written by the report is exactly what the stored trials imply
    report = subprocess.run(
        cli_module("report", str(tmp_path / "a")), capture_output=True, text=True
    )
    assert report.returncode == 0, report.stderr
    rows = pd.read_csv(tmp_path / "a" / "pareto.csv")
    written = rows[rows["role"] == "front"]["number"].tolist()
    assert written == pareto_front(trials_frame(trials), cap=5000)["number"].tolist()
