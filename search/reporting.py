"""A run's reports: its trials, its verification results and its ladder, written to disk."""

from __future__ import annotations

import optuna
import pandas as pd

from budgetnas.reports.html import ReportFiles, write_reports
from budgetnas.search.config import SearchConfig
from budgetnas.search.runs import summary_counts
from budgetnas.search.verified import Verified, ladder_rows, stored_results


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
        "params": v.params,
        "search val": f"{v.search_val_acc:.2%}" if v.search_val_acc is not None else "-",
        "val mean": f"{v.val_mean:.2%}",
        "test mean ± std": f"{v.test_mean:.2%} ± {v.test_std:.2%}",
        "test min": f"{v.test_min:.2%}",
        "seeds": f"{len(v.runs)} ({', '.join(str(r.seed) for r in v.runs)})",
        "fidelity": v.fidelity_label,
        "train time": duration(v.train_time_s),
        "device": v.runs[0].device,
    }


def verified_frames(cfg: SearchConfig, study: optuna.Study) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(every verified architecture, the best verified one under each cap) as display tables."""
    results = stored_results(study)
    verified = pd.DataFrame([_row(v) for v in results.values() if v.runs])
    ladder = pd.DataFrame(
        [{"cap": f"{cap:,}", **_row(v)} for _, cap, v in ladder_rows(results, cfg.caps)]
    )
    return verified, ladder


def write_run_reports(cfg: SearchConfig, study: optuna.Study) -> tuple[ReportFiles, dict]:
    """Write report.html, trials.csv and pareto.csv into the run folder; return the counts."""
    counts = summary_counts(study)
    verified, ladder = verified_frames(cfg, study)
    caps = ", ".join(f"{c:,}" for c in cfg.caps)
    files = write_reports(
        study.get_trials(deepcopy=False),
        cfg.out,
        cap=cfg.budget,
        dataset=cfg.data.dataset,
        title=f"budgetnas: {cfg.data.dataset} under {caps} parameters",
        counts=counts,
        verified=verified,
        ladder=ladder,
    )
    return files, counts
