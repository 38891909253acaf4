"""A search from start to end: its trials (``search.study.driver``), then the race at the
target (``search.verification``), the run folder locked throughout.

``run_search`` is the library's entry point (``budgetnas.search.run_search``) and what
``budgetnas search`` calls.
"""

from __future__ import annotations

import sys

import optuna

from budgetnas.reports.front.frame import trials_frame
from budgetnas.reports.front.pareto import pareto_front
from budgetnas.search.cache.store import ResultCache
from budgetnas.search.errors import VerifyFailed
from budgetnas.search.schedule.yardsticks import empty_front_line
from budgetnas.search.study.config import SearchConfig
from budgetnas.search.study.driver import search_trials
from budgetnas.search.study.processes import RunLock, threads_per_worker
from budgetnas.search.study.runs import candidates_trained
from budgetnas.search.verification.racing import run_race
from budgetnas.search.verification.records import failure_message, stored_results


def run_search(
    cfg: SearchConfig,
    *,
    resume: bool = False,
    quiet: bool = False,
    cache: ResultCache | None = None,
) -> optuna.Study:
    """Run (or continue) the search until ``cfg.trials`` trials have finished or time is up,
    then race its front at the target (``race_front``).

    A new search never joins an existing study; a resumed one only continues its own, with
    the same fingerprint and the same data. ``cache``: finished trainings shared with other
    searches (``search.cache``); None: every training runs. Raises ``VerifyFailed`` when
    seeds of the race failed (the search and the other seeds are stored).

    The run folder is locked while the search runs (``search.study.processes.RunLock``): a
    second search or resume there meanwhile raises ``SearchError`` and changes nothing.
    """
    with RunLock(cfg.out) as lock:
        if resume:
            lock.acquire()  # before anything is read or changed
        study, race = search_trials(cfg, lock, resume=resume, quiet=quiet, cache=cache)
        if race:
            race_front(cfg, study, quiet=quiet, cache=cache)
        elif not quiet:
            why = "--timeout" if cfg.timeout else "see above"
            print(
                f"stopped before the end of the schedule ({why}); continue with "
                f"budgetnas search --resume {cfg.out}",
                file=sys.stderr,
            )
    return study


def race_front(
    cfg: SearchConfig,
    study: optuna.Study,
    *,
    quiet: bool = False,
    cache: ResultCache | None = None,
) -> list:
    """The end of a search: the race at the target (``search.race``, run by
    ``search.racing``): the front, the candidates within reach of its best reading and the
    seed networks under the cap, trained again at the target with new seeds (each stored
    with its weights, so an interrupted race continues on ``--resume``) until the answer
    under each cap and its verdict against the seed networks are clear, over the search's
    processes and within its time budget. Seeds whose training fails are recorded as failed
    while the rest go on; then ``VerifyFailed`` says which. Returns the race's records."""
    if cfg.verify_seeds < 1:
        return []
    target = cfg.schedule.target.index
    df = trials_frame(study.get_trials(deepcopy=False))
    front = pareto_front(df, cap=cfg.cap, rung=target)
    if front.empty:
        if not quiet:
            print(empty_front_line(cfg, candidates_trained(study)), file=sys.stderr)
        return []
    # a seed that diverged in an earlier verification (a resumed search) is a kept result
    earlier = {k: {f.seed for f in v.failed} for k, v in stored_results(study).items()}
    threads = threads_per_worker(cfg.workers) if cfg.workers > 1 else None
    view = run_race(cfg, study, quiet=quiet, cache=cache, threads=threads)
    results = [v for v in view.records.values() if v is not None]
    for v in results:  # the seeds that failed here, in this process or a helper
        v.failed_now = [f.seed for f in v.failed if f.seed not in earlier.get(v.store_key, ())]
    failed = failure_message(results)
    if failed:
        raise VerifyFailed(failed)
    return results
