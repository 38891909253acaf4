"""The end-of-search verification over several processes, as the search itself ran.

A search with ``--workers N`` trains its trials in N processes (on a CPU, one single-threaded
process per core trains more per second than one process with every core); its final
verification (each front member and reference network trained again with new seeds) is a
third of its compute or more, so it is shared the same way: the networks are dealt to the
processes by their cost (multiply-accumulates x seeds, the dearest first, each to the least
loaded), each process verifies its networks with ``search.verify.verify_run`` and stores
each seed as it finishes. Networks, not seeds, are dealt: one network's record is written
by one process. The first process then reads every record back (``verify_run`` again, which
trains only what is missing, for example the share of a helper that died). The helpers end
with the first process (``search.processes``): stopped with it on Ctrl-C or an error, and
within seconds of its death however it dies.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from budgetnas.search.cache import ResultCache, helper_env
from budgetnas.search.config import SearchConfig
from budgetnas.search.processes import start_helper, supervised
from budgetnas.search.verified import FailedSeed, SeedRun, Verified
from budgetnas.space.count import analyze


@dataclass(frozen=True)
class Share:
    """What one process verifies: searched trials and reference networks, with their seeds."""

    trials: tuple[int, ...] = ()
    zoo: tuple[str, ...] = ()
    cost: float = 0.0


def deal(jobs: list[tuple[str, Any, float]], processes: int) -> list[Share]:
    """``jobs`` (``("trial", number, cost)`` or ``("zoo", key, cost)``) dealt to ``processes``
    shares: the dearest first, each to the share with the least cost so far (the first on a
    tie). Empty shares are left out."""
    shares = [Share() for _ in range(max(1, processes))]
    for kind, what, cost in sorted(jobs, key=lambda j: -j[2]):
        i = min(range(len(shares)), key=lambda k: (shares[k].cost, k))
        s = shares[i]
        shares[i] = (
            Share(s.trials + (int(what),), s.zoo, s.cost + cost)
            if kind == "trial"
            else Share(s.trials, s.zoo + (str(what),), s.cost + cost)
        )
    return [s for s in shares if s.trials or s.zoo]


def jobs_of(
    cfg: SearchConfig, study, numbers: list[int], refs: list[str]
) -> list[tuple[str, Any, float]]:
    """The verification's jobs with their costs: MACs per image x seeds."""
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    jobs: list[tuple[str, Any, float]] = [
        ("trial", n, float(by_number[n].user_attrs.get("macs") or 1) * cfg.verify_seeds)
        for n in numbers
    ]
    if cfg.seeds_of_references:
        specs = cfg.reference_specs()
        jobs += [
            ("zoo", k, float(analyze(specs[k][0]).macs) * cfg.seeds_of_references) for k in refs
        ]
    return jobs


def line(item: Verified, run: SeedRun) -> str:
    """One verify seed's progress line."""
    return (
        f"verify  {item.label:<10} {item.params:>7,}  seed {run.seed}  val "
        f"{run.val_acc:.2%}  ({run.train_time_s:.0f} s; {item.fidelity_label})"
        + ("  reused from cache" if run.cached else "")
    )


def failed_line(item: Verified, failed: FailedSeed) -> str:
    """One failed verify seed's progress line (``failed earlier``: a seed that diverged in an
    earlier verification, not trained again)."""
    when = "failed" if failed.seed in item.failed_now else "failed earlier"
    return (
        f"verify  {item.label:<10} {item.params:>7,}  seed {failed.seed}  {when}: "
        f"{failed.error}  ({item.fidelity_label})"
    )


OnResult = Callable[[Verified, SeedRun], None]
OnFailed = Callable[[Verified, FailedSeed], None]


def printers(quiet: bool) -> tuple[OnResult | None, OnFailed | None]:
    """``verify_run``'s ``on_result`` and ``on_failed``: each seed's line on stderr, or None
    when ``quiet``."""
    if quiet:
        return None, None
    return (
        lambda item, run: print(line(item, run), file=sys.stderr, flush=True),
        lambda item, failed: print(failed_line(item, failed), file=sys.stderr, flush=True),
    )


def verify_share(
    cfg: SearchConfig,
    share: Share,
    *,
    cache: ResultCache | None,
    on_result: OnResult | None = None,
    on_failed: OnFailed | None = None,
) -> list[Verified]:
    """Verify one share in this process (front members with ``verify_seeds``, references
    with their own seeds)."""
    from budgetnas.search.verify import verify_run

    common: dict[str, Any] = dict(
        device=cfg.device,
        train_subset=cfg.data.train_subset,
        on_result=on_result,
        on_failed=on_failed,
        cache=cache,
    )
    results = []
    if share.trials:
        results += verify_run(cfg.out, trials=list(share.trials), seeds=cfg.verify_seeds, **common)
    if share.zoo and cfg.seeds_of_references:
        results += verify_run(cfg.out, zoo=list(share.zoo), seeds=cfg.seeds_of_references, **common)
    return results


def verify_parallel(
    cfg: SearchConfig,
    study,
    numbers: list[int],
    refs: list[str],
    *,
    quiet: bool,
    cache: ResultCache | None,
    threads: int,
) -> list[Verified]:
    """Verify ``numbers`` and ``refs`` over ``cfg.workers`` processes (this one and helpers of
    ``threads`` threads each); returns every record, read back in this process."""
    shares = deal(jobs_of(cfg, study, numbers, refs), cfg.workers)
    env = helper_env(cache, threads=threads)
    helpers = [
        start_helper(
            [sys.executable, "-m", "budgetnas.search.verify_pool", _argument(cfg, s, quiet)],
            env=env,
        )
        for s in shares[1:]
    ]
    show, show_failed = printers(quiet)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with supervised(helpers, what="verify", quiet=quiet):
            if shares:
                verify_share(cfg, shares[0], cache=cache, on_result=show, on_failed=show_failed)
    finally:
        torch.set_num_threads(before)
    # every record, read back; what a helper left undone (it died) is trained here
    whole = Share(tuple(numbers), tuple(refs) if cfg.seeds_of_references else ())
    return verify_share(cfg, whole, cache=cache, on_result=None, on_failed=None)


def _argument(cfg: SearchConfig, share: Share, quiet: bool) -> str:
    return json.dumps(
        {"run": str(cfg.out), "trials": list(share.trials), "zoo": list(share.zoo), "quiet": quiet}
    )


def main(argument: str) -> None:
    """A helper process: verify the share ``argument`` (JSON) names, in the run it names;
    it ends with the process that started it."""
    from budgetnas.search.cache import open_cache
    from budgetnas.search.processes import watch_parent
    from budgetnas.search.runs import read_config

    watch_parent()
    args = json.loads(argument)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or torch.get_num_threads()))
    cfg = read_config(args["run"])
    show, show_failed = printers(bool(args.get("quiet")))
    share = Share(tuple(args["trials"]), tuple(args["zoo"]))
    try:
        verify_share(cfg, share, cache=open_cache(), on_result=show, on_failed=show_failed)
    except KeyboardInterrupt:  # stopped by the search, which says so; what finished is stored
        sys.exit(130)


if __name__ == "__main__":
    main(sys.argv[1])
