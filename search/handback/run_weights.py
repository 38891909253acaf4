"""The weights a run keeps: those that can still be handed back.

Every completed trial writes its weights (``weights/trial-NNNNN.pt``; a pruned trial writes
none), and a search of an hour writes hundreds of them, most of them of networks no one will
take: off the front at their rung. At its end a search keeps a trial's own weights when the
trial is

- on the Pareto front (parameters, validation accuracy, under the cap) at its rung, at any rung
  (which holds the best network under each cap of a ladder at that rung),
- verified (``budgetnas verify``, or the search's own verification), or
- a reference network,

and every verify seed's weights (``weights/verify/``); the other trials' are removed. A trial
never leaves a front once off it (a later trial can only dominate it), so what is removed
would never be handed back: ``export`` of the answer and of any trial on a front ships what it
shipped before, and ``export --trial N`` of any trial whose network another kept trial holds
(a promotion of it) still works. Another trial's network is retrained with its weights by
``budgetnas verify RUN --trial N``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from budgetnas.reports.front.frame import trials_frame
from budgetnas.reports.front.pareto import pareto_front
from budgetnas.search.study.config import SearchConfig
from budgetnas.search.study.runs import WEIGHTS_DIR
from budgetnas.search.verification.records import stored_results

__all__ = ["Trimmed", "kept_trials", "trim_weights", "weights_line"]


def kept_trials(trials: Iterable[FrozenTrial], *, cap: int, verified: Collection[str]) -> set[int]:
    """The numbers of the completed trials whose own weights a run keeps: on the front at
    their rung (any rung), verified (``verified``: the verify records' network keys, such as
    ``trial-12``), or reference networks."""
    trials = list(trials)
    df = trials_frame(trials)
    keep: set[int] = set()
    for rung in sorted({int(r) for r in df["rung"].dropna()}):
        keep |= {int(n) for n in pareto_front(df, cap=cap, rung=rung)["number"]}
    for t in trials:
        if t.state != TrialState.COMPLETE:
            continue
        if t.user_attrs.get("reference") or f"trial-{t.number}" in verified:
            keep.add(t.number)
    return keep


@dataclass(frozen=True)
class Trimmed:
    """The weights files of a run's trials after ``trim_weights``: kept, and removed now."""

    folder: Path
    kept: int  # trials whose weights are in the folder (verify seeds apart)
    kept_bytes: int
    verify: int  # verify seeds' weights, all kept
    verify_bytes: int
    dropped: int  # trials whose weights were removed now
    dropped_bytes: int


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def trim_weights(cfg: SearchConfig, study: optuna.Study) -> Trimmed:
    """Remove the weights of the run's completed trials that ``kept_trials`` does not keep
    (files in the run folder's ``weights/`` only; a file another kept trial shares, as a
    duplicate does its original's, is kept)."""
    run = Path(cfg.out)
    folder = (run / WEIGHTS_DIR).resolve()
    trials = study.get_trials(deepcopy=False)
    verified = {v.key for v in stored_results(study).values()}
    keep = kept_trials(trials, cap=cfg.cap, verified=verified)
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.user_attrs.get("weights")]
    kept_paths = {(run / t.user_attrs["weights"]).resolve() for t in done if t.number in keep}
    dropped_paths = {(run / t.user_attrs["weights"]).resolve() for t in done} - kept_paths
    dropped = dropped_bytes = 0
    for path in sorted(dropped_paths):
        if path.parent != folder or not path.is_file():  # elsewhere, or removed before
            continue
        size = _size(path)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            dropped, dropped_bytes = dropped + 1, dropped_bytes + size
    here = [p for p in kept_paths if p.is_file()]
    seeds = list((folder / "verify").glob("*.pt")) if (folder / "verify").is_dir() else []
    return Trimmed(
        folder=run / WEIGHTS_DIR,
        kept=len(here),
        kept_bytes=sum(_size(p) for p in here),
        verify=len(seeds),
        verify_bytes=sum(_size(p) for p in seeds),
        dropped=dropped,
        dropped_bytes=dropped_bytes,
    )


def weights_line(trimmed: Trimmed) -> str:
    """The search's last line on its weights: what is kept, where, and what was removed."""
    from budgetnas.search.cache.admin import format_size

    t = trimmed
    line = (
        f"weights: {format_size(t.kept_bytes + t.verify_bytes)} in {t.folder}: those of "
        f"{t.kept} trial{'s' * (t.kept != 1)} on a front, verified or seed networks, and "
        f"{t.verify} verify seed{'s' * (t.verify != 1)}"
    )
    if t.dropped:
        line += (
            f"; dropped those of {t.dropped} trial{'s' * (t.dropped != 1)} off every front "
            f"({format_size(t.dropped_bytes)})"
        )
    return line
