"""The progress lines of verification seeds, as the race at the end of a search prints
them (in every one of its processes, on the same stderr) and as ``verify`` reports them."""

from __future__ import annotations

import sys
from collections.abc import Callable

from budgetnas.search.verification.records import FailedSeed, SeedRun, Verified


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


def verify_line(item: Verified, run: SeedRun) -> str:
    """One seed's line as ``budgetnas verify`` prints it: validation and test accuracy."""
    return (
        f"{item.label:<12} {item.params:>7,}  seed {run.seed}  val {run.val_acc:.2%}  "
        f"test {run.test_acc:.2%}  ({run.train_time_s:.0f} s on {run.device}; "
        f"{item.fidelity_label})" + ("  reused from cache" if run.cached else "")
    )


def verify_failed_line(item: Verified, failed: FailedSeed) -> str:
    """One failed seed's line as ``budgetnas verify`` prints it."""
    when = "failed" if failed.seed in item.failed_now else "failed earlier"
    return (
        f"{item.label:<12} {item.params:>7,}  seed {failed.seed}  {when}: {failed.error}  "
        f"({failed.device}; {item.fidelity_label})"
    )


def verified_table(results: list[Verified]) -> list[str]:
    """``budgetnas verify``'s table: per network its validation mean, test mean ± std and
    minimum over the seeds, the fidelity, and the seeds that failed."""
    from budgetnas.search.verification.records import mean_spread

    lines = [
        f"{'network':<12} {'params':>7}  {'val mean':>8}  {'test mean ± std':>17}  {'min':>6}"
        "  fidelity"
    ]
    for v in results:
        ok = bool(v.runs)
        lines.append(
            f"{v.label:<12} {v.params:>7,}  {f'{v.val_mean:.2%}' if ok else '-':>8}  "
            f"{mean_spread([r.test_acc for r in v.runs]):>17}  "
            f"{f'{v.test_min:.2%}' if ok else '-':>6}  {v.fidelity_label}"
            + (f"  {v.failed_label}" if v.failed else "")
        )
    return lines
