"""Where a run's compute went: minutes of training per kind of work, and what reuse saved.

The kinds are the candidates the sampler proposed (rung 0), their promotions to higher rungs,
the reference networks trained in the study, and the final verification (new seeds) of the
searched networks and of the references. A training that was reused rather than run, from
the machine-wide results cache (``cached``) or from an identical trial of the same study
(``duplicate_of``), took no time: it is counted apart, with the minutes it would have cost
where the original training's time is known.

Computed here from stored values only (trial user attributes and plain verify-seed values,
no training code), shown by the search's last lines and report.html; the numbers are tested
exactly, the table only smoke-tested.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd
from optuna.trial import FrozenTrial

SAMPLED = "sampled candidates"
PROMOTIONS = "promotions"
REFERENCES = "references"
VERIFY_SEARCHED = "verification of searched networks"
VERIFY_REFERENCES = "verification of references"
TOTAL = "in all"
KINDS = (SAMPLED, PROMOTIONS, REFERENCES, VERIFY_SEARCHED, VERIFY_REFERENCES)

COLUMNS = ["what", "trainings", "minutes", "share", "reused", "saved_minutes", "saved_unknown"]


@dataclass(frozen=True)
class VerifyTraining:
    """One finished verify seed as ``search.verified`` stores it, in plain values: whether
    the network is a searched one (else a reference), its recorded train time and whether it
    was reused from the results cache (then ``train_time_s`` is the original training's)."""

    searched: bool
    train_time_s: float
    cached: bool = False


def _kind(trial: FrozenTrial) -> str:
    attrs = trial.user_attrs
    if attrs.get("reference"):
        return REFERENCES
    if attrs.get("promoted_from") is not None or int(attrs.get("rung") or 0) > 0:
        return PROMOTIONS
    return SAMPLED


def process_seconds(attrs: dict) -> float | None:
    """Seconds of its process a trial's training took: its wall time (else its train time),
    shared with the trainings in flight beside it (``at_once``, ``--concurrent``)."""
    seconds = attrs.get("wall_time_s")
    if seconds is None:
        seconds = attrs.get("train_time_s")
    if seconds is None:
        return None
    return float(seconds) / float(attrs.get("at_once") or 1.0)


def _trained_s(trial: FrozenTrial) -> float | None:
    """Seconds the trial's own training ran (completed, pruned or failed alike: it used the
    device); None when it trained nothing here (reused, rejected, idle, never started)."""
    attrs = trial.user_attrs
    if attrs.get("cached") or attrs.get("duplicate_of") is not None:
        return None
    return process_seconds(attrs)


def _original_s(trial: FrozenTrial, by_number: dict[int, FrozenTrial]) -> float | None:
    """Seconds a reused trial would have cost: for a cache hit, the train time the cache
    recorded (none for one cut by the pruner while its curve was replayed); for a duplicate,
    its original's cost. None when not known."""
    attrs = trial.user_attrs
    seen: set[int] = set()
    while attrs.get("duplicate_of") is not None and not attrs.get("cached"):
        number = int(attrs["duplicate_of"])
        if number in seen or number not in by_number:
            return None
        seen.add(number)
        attrs = by_number[number].user_attrs
    if attrs.get("cached"):
        seconds = attrs.get("train_time_s")
        return None if seconds is None else float(seconds)
    return process_seconds(attrs)


def compute_table(
    trials: Iterable[FrozenTrial], verify: Iterable[VerifyTraining] = ()
) -> pd.DataFrame:
    """One row per kind of work (``KINDS``) and a last row ``in all``: ``trainings`` run and
    the ``minutes`` they took (pruned and failed trainings too: they used the device; a trial
    counts its ``process_seconds``; a verify seed its
    ``train_time_s``), their ``share`` of all minutes spent (NaN when none were), the trainings
    ``reused`` instead of run and the ``saved_minutes`` they would have cost where known
    (NaN when none of them is known), ``saved_unknown``: the reused ones whose cost is not.

    Rejected and idle trials trained nothing and are not counted; a verify seed whose
    training failed stores no time and is not counted either."""
    trials = list(trials)
    by_number = {t.number: t for t in trials}
    spent = {kind: [] for kind in KINDS}  # seconds per training run
    saved: dict[str, list[float | None]] = {kind: [] for kind in KINDS}
    for t in trials:
        attrs = t.user_attrs
        if attrs.get("rejected") or attrs.get("idle"):
            continue
        kind = _kind(t)
        if attrs.get("cached") or attrs.get("duplicate_of") is not None:
            saved[kind].append(_original_s(t, by_number))
            continue
        seconds = _trained_s(t)
        if seconds is not None:
            spent[kind].append(seconds)
    for run in verify:
        kind = VERIFY_SEARCHED if run.searched else VERIFY_REFERENCES
        (saved if run.cached else spent)[kind].append(float(run.train_time_s))

    total_s = sum(sum(s) for s in spent.values())
    rows = []
    for kind in KINDS:
        known = [s for s in saved[kind] if s is not None]
        rows.append(
            {
                "what": kind,
                "trainings": len(spent[kind]),
                "minutes": sum(spent[kind]) / 60,
                "share": sum(spent[kind]) / total_s if total_s else float("nan"),
                "reused": len(saved[kind]),
                "saved_minutes": sum(known) / 60 if known or not saved[kind] else float("nan"),
                "saved_unknown": len(saved[kind]) - len(known),
            }
        )
    df = pd.DataFrame(rows, columns=COLUMNS)
    known_saved = [s for kind in KINDS for s in saved[kind] if s is not None]
    reused = int(df["reused"].sum())
    total = {
        "what": TOTAL,
        "trainings": int(df["trainings"].sum()),
        "minutes": total_s / 60,
        "share": 1.0 if total_s else float("nan"),
        "reused": reused,
        "saved_minutes": sum(known_saved) / 60 if known_saved or not reused else float("nan"),
        "saved_unknown": int(df["saved_unknown"].sum()),
    }
    return pd.concat([df, pd.DataFrame([total], columns=COLUMNS)], ignore_index=True)


def _saved_text(reused: int, minutes: float, unknown: int) -> str:
    """``4.2 min saved``; ``4.2 min saved; time of 2 not known``; ``time saved not known``."""
    if unknown == reused:
        return "time saved not known"
    text = f"{minutes:.1f} min saved"
    return text + (f"; time of {unknown} not known" if unknown else "")


def compute_line(table: pd.DataFrame) -> str:
    """``compute: 31.2 min in all: sampled candidates 12.0 min (38%), promotions 8.1 min
    (26%), references 3.0 min (10%), verification 8.1 min (26%); reused 7 trainings (4.2 min
    saved)`` from a ``compute_table``: the kinds that trained anything, both verifications
    as one."""
    rows = table.set_index("what")
    total = rows.loc[TOTAL]
    if not total["trainings"] and not total["reused"]:
        return "compute: nothing trained yet"
    kinds = {
        SAMPLED: [SAMPLED],
        PROMOTIONS: [PROMOTIONS],
        REFERENCES: [REFERENCES],
        "verification": [VERIFY_SEARCHED, VERIFY_REFERENCES],
    }
    parts = []
    for name, members in kinds.items():
        if rows.loc[members, "trainings"].sum():
            minutes = rows.loc[members, "minutes"].sum()
            share = minutes / total["minutes"] if total["minutes"] else 0.0
            parts.append(f"{name} {minutes:.1f} min ({share:.0%})")
    text = f"compute: {total['minutes']:.1f} min in all" + (
        ": " + ", ".join(parts) if parts else ""
    )
    reused = int(total["reused"])
    if reused:
        saved = _saved_text(reused, float(total["saved_minutes"]), int(total["saved_unknown"]))
        text += f"; reused {reused} training{'s' * (reused != 1)} ({saved})"
    return text
