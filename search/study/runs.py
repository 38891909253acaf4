"""Read-only access to a run folder: its config, its study, its trials.

Reports, exports and verification open runs through here; nothing in this module trains or
imports the training loop. A run folder holds ``config.json`` (the exact settings), the study
(``study.db`` or ``study.journal``, unless ``--storage`` named another Optuna storage),
``weights/`` (one file per completed trial) and the reports.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from budgetnas.reports.front.frame import trials_frame
from budgetnas.reports.front.pareto import best_row
from budgetnas.search.errors import SearchError
from budgetnas.search.schedule.trials import is_idle, is_lost, is_sampled, rung_of
from budgetnas.search.study.config import CONFIG_FILE, JOURNAL_FILE, STUDY_FILE, SearchConfig
from budgetnas.search.study.storage import open_storage
from budgetnas.space.spec import ArchSpec, SpecError
from budgetnas.trainers.datasets import DataError
from budgetnas.trainers.recipe import ConfigError

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
WEIGHTS_DIR = "weights"
# study user attributes
CONFIG_ATTR = "config"
FINGERPRINT_ATTR = "fingerprint"
DIGEST_ATTR = "data_digest"


def read_config(run: Path | str) -> SearchConfig:
    """The config of a run folder, with ``out`` pointing at the folder as it is now."""
    run = Path(run)
    if not run.is_dir():
        raise SearchError(f"run folder {run} does not exist")
    path = run / CONFIG_FILE
    if not path.is_file():
        raise SearchError(f"{run} holds no budgetnas run (no {CONFIG_FILE})")
    try:
        cfg = SearchConfig.from_json(path.read_text(encoding="utf-8"))
    except (SearchError, DataError, ConfigError, SpecError) as err:
        raise SearchError(f"{path} holds settings that are not valid: {err}") from None
    except (ValueError, TypeError, KeyError, AttributeError) as err:  # not JSON, not a config
        raise SearchError(f"{path} is unreadable: {err!r}") from None
    return replace(cfg, out=str(run.resolve()))


def open_run(run: Path | str) -> tuple[SearchConfig, optuna.Study]:
    """The config and study of an existing run folder."""
    cfg = read_config(run)
    files = (STUDY_FILE, JOURNAL_FILE)
    if cfg.storage is None and not any((Path(run) / f).is_file() for f in files):
        raise SearchError(f"{run} holds no study ({STUDY_FILE} is missing)")
    storage = open_storage(cfg.storage_url(), heartbeat=cfg.heartbeat)
    try:
        study = optuna.load_study(study_name=cfg.study_name, storage=storage)
    except KeyError:
        raise SearchError(f"{run} holds no study named {cfg.study_name!r}") from None
    return cfg, study


def candidates_trained(study: optuna.Study) -> int:
    """Trials that count towards ``--trials``: sampled candidates that were trained at rung 0,
    to the end or until pruned. A failed trial is retried; a candidate rejected before
    training (over a cap), a promotion to a higher rung and the reference networks do not
    count."""
    trials = study.get_trials(deepcopy=False, states=FINISHED)
    return sum(1 for t in trials if is_sampled(t) and not is_rejected(t))


def is_rejected(trial: FrozenTrial) -> bool:
    """Rejected before training: the candidate was over a cap."""
    return bool(trial.user_attrs.get("rejected"))


def accuracy(trial: FrozenTrial) -> float | None:
    """A completed trial's validation accuracy (its first objective), else None."""
    return float(trial.values[0]) if trial.values else None


def trial_spec(trial: FrozenTrial) -> ArchSpec:
    """The spec stored on a trial (what reports, export and re-training rebuild from)."""
    text = trial.user_attrs.get("spec")
    if text is None:
        raise SearchError(f"trial {trial.number} has no stored spec (it was rejected)")
    return ArchSpec.from_json(text)


def summary_counts(study: optuna.Study) -> dict[str, Any]:
    """How the trials of a study ended. ``complete``, ``pruned``, ``duplicates``: searched
    trials at any rung (reference networks apart, in ``references``); ``sampled``,
    ``complete_rung0``, ``pruned_rung0``: the candidates the sampler proposed and were trained
    at rung 0; ``promoted_to``: rung -> candidates trained there after a promotion;
    ``rejected``: candidates over a cap, never trained (``rejected_by``: per cap);
    ``rejected_fraction``: of the candidates sampled; ``reference_rungs``: rung -> the
    reference network runs completed there; ``failed``: trials that failed on their own,
    ``interrupted``: trials lost to Ctrl-C or a dead process (trained again); ``rungs``: per
    rung, the searched trials trained there (``trained``: sampled at rung 0, promoted
    above; ``complete``, ``pruned``, ``reused``: from an identical trial of the study or from
    the results cache) and the trials that failed there."""
    trials = [t for t in study.get_trials(deepcopy=False) if not is_idle(t)]
    refs = [t for t in trials if t.user_attrs.get("reference")]
    searched = [t for t in trials if not t.user_attrs.get("reference")]
    rejected = [t for t in searched if is_rejected(t)]
    counts: dict[str, Any] = {
        "complete": sum(t.state == TrialState.COMPLETE for t in searched),
        "duplicates": sum(t.user_attrs.get("duplicate_of") is not None for t in searched),
        "pruned": sum(t.state == TrialState.PRUNED for t in searched) - len(rejected),
        "rejected": len(rejected),
        "failed": sum(t.state == TrialState.FAIL and not is_lost(t) for t in trials),
        "interrupted": sum(is_lost(t) for t in trials),
        "references": sum(t.state == TrialState.COMPLETE for t in refs),
    }
    at: dict[int, int] = {}
    for t in refs:
        if t.state == TrialState.COMPLETE:
            at[rung_of(t)] = at.get(rung_of(t), 0) + 1
    counts["reference_rungs"] = dict(sorted(at.items()))
    by_cap: dict[str, int] = {}
    for t in rejected:
        cap = t.user_attrs.get("rejected_by", "parameters")
        by_cap[cap] = by_cap.get(cap, 0) + 1
    counts["rejected_by"] = by_cap
    counts["total"] = len(trials)
    sampled = [t for t in searched if is_sampled(t)]
    counts["rejected_fraction"] = len(rejected) / len(sampled) if sampled else 0.0
    done = [t for t in sampled if t.state in FINISHED and not is_rejected(t)]
    counts["sampled"] = len(done)
    counts["complete_rung0"] = sum(t.state == TrialState.COMPLETE for t in done)
    counts["pruned_rung0"] = sum(t.state == TrialState.PRUNED for t in done)
    promoted: dict[int, int] = {}
    for t in searched:
        if rung_of(t) > 0 and t.state in FINISHED:
            promoted[rung_of(t)] = promoted.get(rung_of(t), 0) + 1
    counts["promoted_to"] = promoted
    rows = []
    for r in range(1 + max((rung_of(t) for t in trials), default=0)):
        here = [t for t in searched if rung_of(t) == r and not is_rejected(t)]
        trained = [t for t in here if t.state in FINISHED and (r > 0 or is_sampled(t))]
        rows.append(
            {
                "rung": r,
                "trained": len(trained),
                "complete": sum(t.state == TrialState.COMPLETE for t in trained),
                "pruned": sum(t.state == TrialState.PRUNED for t in trained),
                "reused": sum(
                    t.user_attrs.get("duplicate_of") is not None or bool(t.user_attrs.get("cached"))
                    for t in trained
                ),
                "failed": sum(
                    t.state == TrialState.FAIL and not is_lost(t) for t in trials if rung_of(t) == r
                ),
            }
        )
    counts["rungs"] = rows
    return counts


def pick_trial(trials: list[FrozenTrial], number: int | None, *, cap: int) -> FrozenTrial:
    """Trial ``number``, or the best completed searched one under the cap (never a reference
    network); ``SearchError`` if unusable."""
    by_number = {t.number: t for t in trials}
    if number is None:
        best = best_row(trials_frame(trials), cap=cap)
        if best is None:
            raise SearchError("the run has no completed searched trial to export yet")
        return by_number[int(best["number"])]
    if number not in by_number:
        last = max(by_number) if by_number else None
        have = f"trials 0..{last}" if last is not None else "no trials"
        raise SearchError(f"trial {number} does not exist (the study has {have})")
    trial = by_number[number]
    if trial.state != TrialState.COMPLETE:
        state = {
            TrialState.FAIL: "failed",
            TrialState.RUNNING: "is still running",
            TrialState.WAITING: "is waiting to run",
        }.get(trial.state, f"was {trial.state.name.lower()}")
        if trial.user_attrs.get("rejected"):
            state = "was rejected before training"
        raise SearchError(f"trial {number} {state}; only completed trials have weights")
    return trial


def counts_text(counts: dict, *, rungs: int = 1) -> str:
    """How the trials of a search ended, in one line (``search.runs.summary_counts``): the
    candidates sampled at rung 0, those promoted to each rung above and how each rung's
    ended (complete, pruned: cut by the pruner), rejections, failures (per rung when there
    are rungs) and reference runs."""
    rows = {row["rung"]: row for row in counts.get("rungs") or []}

    def row(r: int) -> dict:
        return rows.get(r) or {"trained": 0, "complete": 0, "pruned": 0, "reused": 0, "failed": 0}

    def ended(r: int, reused: bool) -> str:
        x = row(r)
        more = f"; {x['reused']} reused" if reused or x["reused"] else ""
        return f"({x['complete']} complete, {x['pruned']} pruned{more})"

    rejected = "".join(
        f"; {n} over the {cap} cap" for cap, n in sorted(counts["rejected_by"].items())
    )
    text = (
        f"candidates: {row(0)['trained']} sampled {ended(0, True)}, {counts['rejected']} "
        f"rejected before training ({counts['rejected_fraction']:.1%} of the candidates "
        f"sampled{rejected})"
    )
    if rungs > 1:
        climbs = [
            f"{row(r)['trained']} to rung {r} {ended(r, False)}"
            for r in range(1, rungs)
            if row(r)["trained"]
        ]
        text += f"; promoted: {', '.join(climbs) if climbs else 'none'}"
    text += f"; {counts['failed']} failed"
    where = [f"{row(r)['failed']} at rung {r}" for r in range(rungs) if row(r)["failed"]]
    if rungs > 1 and where:
        text += f" ({', '.join(where)})"
    if counts.get("interrupted"):
        text += f"; {counts['interrupted']} interrupted"
    refs = counts["references"]
    text += f"; {refs} reference network runs"
    at = counts.get("reference_rungs") or {}
    if rungs > 1 and refs and at:
        if len(at) == rungs and len(set(at.values())) == 1:
            text += f" ({refs // rungs} at each of {rungs} rungs)"
        else:
            text += (
                " ("
                + ", ".join(
                    f"{n} at rung {r}" + (", the target" if r == rungs - 1 else "")
                    for r, n in sorted(at.items())
                )
                + ")"
            )
    return text
