"""A run's reports: its trials, its verification results and its ladder, written to disk."""

from __future__ import annotations

import statistics

import optuna
import pandas as pd

from budgetnas.reports.frame import trials_frame
from budgetnas.reports.html import ReportFiles, write_reports
from budgetnas.reports.sizes import size_table
from budgetnas.search.config import SearchConfig
from budgetnas.search.runs import summary_counts
from budgetnas.search.verified import Verified, best_verified, ladder_rows, stored_results


def duration(seconds: float) -> str:
    """``24 s``, ``3.5 min``, ``1.2 h``: seconds under a minute stay seconds."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _row(v: Verified) -> dict:
    return {
        "network": v.label,
        "params": f"{v.params:,}",
        "search val": f"{v.search_val_acc:.2%}" if v.search_val_acc is not None else "-",
        "val mean": f"{v.val_mean:.2%}",
        "test mean ± std": f"{v.test_mean:.2%} ± {v.test_std:.2%}",
        "test min": f"{v.test_min:.2%}",
        "seeds": f"{len(v.runs)} ({', '.join(str(r.seed) for r in v.runs)})",
        "fidelity": v.fidelity_label,
        "train time": duration(v.train_time_s),
        "device": v.runs[0].device,
        "cached seeds": ", ".join(str(r.seed) for r in v.runs if r.cached) or "-",
    }


def verified_frames(cfg: SearchConfig, study: optuna.Study) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(every verified architecture, the best verified one under each cap) as display tables."""
    results = stored_results(study)
    verified = pd.DataFrame([_row(v) for v in results.values() if v.runs])
    ladder = pd.DataFrame(
        [{"cap": f"{cap:,}", **_row(v)} for _, cap, v in ladder_rows(results, cfg.caps)]
    )
    return verified, ladder


def at_target(cfg: SearchConfig, study: optuna.Study) -> pd.DataFrame:
    """The networks verified at the search's target fidelity (epochs and training images of
    the last rung), one row each (its record with the most seeds): the searched front's
    members and the reference networks, with mean and standard deviation over the seeds."""
    target = cfg.schedule.target
    best: dict[str, Verified] = {}
    for v in stored_results(study).values():
        fid = v.fidelity
        if (
            not v.runs
            or fid is None
            or (fid.epochs, fid.train_images)
            != (
                target.epochs,
                target.images,
            )
        ):
            continue
        if v.key not in best or len(v.runs) > len(best[v.key].runs):
            best[v.key] = v
    rows = []
    for v in best.values():
        vals = [r.val_acc for r in v.runs]
        rows.append(
            {
                "key": v.key,
                "number": int(v.key.removeprefix("trial-")) if v.searched else None,
                "reference": None if v.searched else v.key.removeprefix("zoo-"),
                "label": v.label,
                "params": v.params,
                "seeds": len(v.runs),
                "val_mean": v.val_mean,
                "val_std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
                "test_mean": v.test_mean,
                "test_std": v.test_std,
                "fidelity": v.fidelity_label,
            }
        )
    columns = ["key", "number", "reference", "label", "params", "seeds", "val_mean", "val_std"]
    return pd.DataFrame(rows, columns=[*columns, "test_mean", "test_std", "fidelity"])


def _answer(cfg: SearchConfig, study: optuna.Study) -> str | None:
    """One line on the network ``budgetnas export`` ships by default, once one is verified."""
    best = best_verified(stored_results(study), cfg.budget)
    if best is None:
        return None
    n = len(best.runs)
    return (
        f"{best.label}, {best.params:,} parameters: validation {best.val_mean:.2%}, test "
        f"{best.test_mean:.2%} ± {best.test_std:.2%} over {n} seed{'s' * (n > 1)} at "
        f"{best.fidelity_label}"
    )


def write_run_reports(cfg: SearchConfig, study: optuna.Study) -> tuple[ReportFiles, dict]:
    """Write report.html, trials.csv and pareto.csv into the run folder; return the counts."""
    counts = summary_counts(study)
    verified, ladder = verified_frames(cfg, study)
    caps = ", ".join(f"{c:,}" for c in cfg.caps)
    files = write_reports(
        study.get_trials(deepcopy=False),
        cfg.out,
        cap=cfg.budget,
        dataset=cfg.data.info.name,
        title=f"budgetnas: {cfg.data.info.name} under {caps} parameters",
        counts=counts,
        verified=verified,
        ladder=ladder,
        rungs=[r.label() for r in cfg.schedule.rungs],
        target=at_target(cfg, study),
        answer=_answer(cfg, study),
        sizes=sizes_table(cfg, study),
    )
    return files, counts


def sizes_table(cfg: SearchConfig, study: optuna.Study) -> pd.DataFrame:
    """The sampled candidates per size band of each cap (``reports.sizes``)."""
    df = trials_frame(study.get_trials(deepcopy=False))
    return size_table(df, caps=cfg.caps, min_fraction=cfg.space_config.min_size_fraction)
