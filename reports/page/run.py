"""A run's reports: its trials, its verification results and its ladder, written to disk."""

from __future__ import annotations

import statistics
from dataclasses import replace

import optuna
import pandas as pd

from budgetnas.reports.front.compute import VerifyTraining, compute_table
from budgetnas.reports.front.frame import trials_frame
from budgetnas.reports.front.sizes import size_table
from budgetnas.reports.page.html import ReportFiles, write_reports
from budgetnas.search.study.config import SearchConfig
from budgetnas.search.study.runs import summary_counts
from budgetnas.search.units import duration
from budgetnas.search.verification.records import (
    Fidelity,
    Verified,
    best_verified,
    ladder_rows,
    mean_spread,
    stored_results,
)
from budgetnas.search.verification.standing import race_lines
from budgetnas.trainers.recipe import TrainConfig


def target_fidelity(cfg: SearchConfig, v: Verified) -> Fidelity:
    """The fidelity of the search's own target for ``v``'s network: the recipe it was searched
    with (its seed aside) at the last rung's epochs, on the last rung's images."""
    target = cfg.schedule.target
    recipe = replace(TrainConfig.from_dict(v.recipe), epochs=target.epochs).to_dict()
    return Fidelity(target.epochs, target.images, {k: x for k, x in recipe.items() if k != "seed"})


def vs_target(cfg: SearchConfig, v: Verified) -> str:
    """``target`` when ``v`` was verified with the search's own recipe at the target, else what
    differs (``lr 1000 (target 0.05)``); ``-`` for a record from before fidelities were."""
    if v.fidelity is None:
        return "-"
    recipe = TrainConfig.from_dict(v.fidelity.recipe).to_dict()
    mine = Fidelity(
        v.fidelity.epochs, v.fidelity.train_images, {k: x for k, x in recipe.items() if k != "seed"}
    )
    return mine.differences(target_fidelity(cfg, v)) or "target"


def _row(v: Verified, cfg: SearchConfig | None = None) -> dict:
    """One verified record as the report shows it (``cfg``: to say how its recipe differs
    from the search's target)."""
    ok = bool(v.runs)
    seeds = f"{len(v.runs)} ({', '.join(str(r.seed) for r in v.runs)})" if ok else "0"
    return {
        "network": v.label,
        "params": f"{v.params:,}",
        "search val": f"{v.search_val_acc:.2%}" if v.search_val_acc is not None else "-",
        "val mean": f"{v.val_mean:.2%}" if ok else "-",
        "test mean ± std": mean_spread([r.test_acc for r in v.runs]),
        "test min": f"{v.test_min:.2%}" if ok else "-",
        "seeds": seeds + (f"; {v.failed_label}" if v.failed else ""),
        "fidelity": v.fidelity_label,
        "recipe vs the target": vs_target(cfg, v) if cfg is not None else "-",
        "train time per seed": (
            "-"
            if not ok
            else duration(v.seconds_per_seed)
            if v.seconds_per_seed is not None
            else "- (all cached)"
        ),
        "device": v.runs[0].device if ok else v.failed[0].device,
        "cached seeds": ", ".join(str(r.seed) for r in v.runs if r.cached) or "-",
    }


def verified_frames(cfg: SearchConfig, study: optuna.Study) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(every verified architecture, the best verified one under each cap) as display tables;
    a record whose every seed failed is listed too."""
    results = stored_results(study)
    verified = pd.DataFrame([_row(v, cfg) for v in results.values() if v.runs or v.failed])
    ladder = pd.DataFrame(
        [{"cap": f"{cap:,}", **_row(v, cfg)} for _, cap, v in ladder_rows(results, cfg.caps)]
    )
    return verified, ladder


def at_target(cfg: SearchConfig, study: optuna.Study) -> pd.DataFrame:
    """The networks verified at the search's target: its own recipe (``target_fidelity``; a
    verify with another ``--lr``, ``--epochs``, ... is not the target) on the last rung's
    images, one row each (its record with the most seeds): the searched front's members and
    the reference networks, with mean and standard deviation over the seeds that finished
    (``val_std``, ``test_std``: NaN for one seed, which has no spread) and how many failed."""
    best: dict[str, Verified] = {}
    for v in stored_results(study).values():
        if not (v.runs or v.failed) or vs_target(cfg, v) != "target":
            continue
        if v.key not in best or len(v.runs) > len(best[v.key].runs):
            best[v.key] = v
    rows = []
    for v in best.values():
        vals, tests = [r.val_acc for r in v.runs], [r.test_acc for r in v.runs]
        rows.append(
            {
                "key": v.key,
                "number": int(v.key.removeprefix("trial-")) if v.searched else None,
                "reference": None if v.searched else v.key.removeprefix("zoo-"),
                "label": v.label,
                "params": v.params,
                "seeds": len(v.runs),
                "failed": len(v.failed),
                "val_mean": statistics.fmean(vals) if vals else None,
                "val_std": statistics.stdev(vals) if len(vals) > 1 else None,
                "test_mean": statistics.fmean(tests) if tests else None,
                "test_std": statistics.stdev(tests) if len(tests) > 1 else None,
                "fidelity": v.fidelity_label,
            }
        )
    columns = ["key", "number", "reference", "label", "params", "seeds", "failed"]
    columns += ["val_mean", "val_std", "test_mean", "test_std", "fidelity"]
    return pd.DataFrame(rows, columns=columns)


def _answer(cfg: SearchConfig, study: optuna.Study) -> str | None:
    """One line on the network ``budgetnas export`` ships by default, once one is verified:
    the race's answer under the cap, else the best verified searched network."""
    from budgetnas.search.verification.standing import race_answer

    raced = race_answer(cfg, study)
    if raced is not None:
        return raced
    best = best_verified(stored_results(study), cfg.cap)
    if best is None:
        return None
    n = len(best.runs)
    test = mean_spread([r.test_acc for r in best.runs])
    over = "" if n == 1 else f" over {n} seeds"  # one seed: the value says "(1 seed)"
    return (
        f"{best.label}, {best.params:,} parameters: validation {best.val_mean:.2%}, test "
        f"{test}{over} at {best.fidelity_label}"
    )


def write_run_reports(cfg: SearchConfig, study: optuna.Study) -> tuple[ReportFiles, dict]:
    """Write report.html, trials.csv and pareto.csv into the run folder; return the counts."""
    counts = summary_counts(study)
    verified, ladder = verified_frames(cfg, study)
    caps = ", ".join(f"{c:,}" for c in cfg.caps)
    files = write_reports(
        study.get_trials(deepcopy=False),
        cfg.out,
        cap=cfg.cap,
        dataset=cfg.data.info.name,
        title=f"budgetnas: {cfg.data.info.name} under {caps} parameters",
        counts=counts,
        verified=verified,
        ladder=ladder,
        rungs=[r.label() for r in cfg.schedule.rungs],
        target=at_target(cfg, study),
        answer=_answer(cfg, study),
        race=race_lines(cfg, study),
        sizes=sizes_table(cfg, study),
        compute=spent_table(study),
    )
    return files, counts


def sizes_table(cfg: SearchConfig, study: optuna.Study) -> pd.DataFrame:
    """The sampled candidates per size band of each cap (``reports.sizes``)."""
    df = trials_frame(study.get_trials(deepcopy=False))
    return size_table(df, caps=cfg.caps, min_fraction=cfg.space_config.min_size_fraction)


def verify_trainings(study: optuna.Study) -> list[VerifyTraining]:
    """Every finished verify seed stored on the study, as ``reports.compute`` reads them (a
    seed whose training failed stores no time: left out)."""
    return [
        VerifyTraining(searched=v.searched, train_time_s=r.train_time_s, cached=r.cached)
        for v in stored_results(study).values()
        for r in v.runs
    ]


def spent_table(study: optuna.Study) -> pd.DataFrame:
    """Where the run's compute went: minutes per kind of work, and what reuse saved
    (``reports.compute``)."""
    return compute_table(study.get_trials(deepcopy=False), verify_trainings(study))
