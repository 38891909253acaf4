"""Opening the study storage: processes that open a new SQLite study at the same moment (the
workers of one search, a worker started beside its search) all get it."""

from __future__ import annotations

import multiprocessing as mp

import optuna

from budgetnas.search.storage import open_storage


def _open(url: str, barrier, results) -> None:
    barrier.wait()
    try:
        open_storage(url)
        results.put("ok")
    except Exception as err:  # reported to the test, whatever it is
        results.put(str(err))


def test_processes_opening_a_new_sqlite_study_at_once_all_get_it(tmp_path):
    ctx = mp.get_context("fork")
    failures = []
    for round_ in range(6):  # before the retry: about one open in five lost the race
        url = f"sqlite:///{tmp_path / f'study{round_}.db'}"
        barrier, results = ctx.Barrier(4), ctx.Queue()
        procs = [ctx.Process(target=_open, args=(url, barrier, results)) for _ in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        failures += [r for r in (results.get(timeout=5) for _ in procs) if r != "ok"]
        assert optuna.get_all_study_summaries(storage=url) == []  # a usable, empty storage
    assert failures == []
