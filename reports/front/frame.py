"""Stored trials -> one pandas row per trial, read only from what the trial stores."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
from optuna.trial import FrozenTrial, TrialState

COLUMNS = [
    "number",
    "state",
    "params",
    "macs",
    "act_f32_bytes",
    "act_int8_bytes",
    "receptive_field",
    "val_acc",
    "rung",
    "epochs",
    "train_images",
    "train_time_s",
    "device",
    "summary",
    "reason",
    "cap",
    "duplicate_of",
    "cached",
    "promoted_from",
    "candidate",
    "reference",
    "spec",
]

_STATES = {
    TrialState.COMPLETE: "complete",
    TrialState.PRUNED: "pruned",
    TrialState.FAIL: "failed",
    TrialState.RUNNING: "running",
    TrialState.WAITING: "waiting",
}


def _row(t: FrozenTrial) -> dict:
    attrs = t.user_attrs
    curve = attrs.get("val_curve") or []
    rejected = attrs.get("rejected")
    return {
        "number": t.number,
        "state": "rejected" if rejected else _STATES[t.state],
        "params": attrs.get("params"),
        "macs": attrs.get("macs"),
        # peak activation memory, plain layer-by-layer order (space.memory), per element size
        "act_f32_bytes": None if attrs.get("activation") is None else 4 * attrs["activation"],
        "act_int8_bytes": attrs.get("activation"),
        "receptive_field": attrs.get("receptive_field"),
        # a completed trial's accuracy (its first objective); for a pruned one, its last
        # validation accuracy
        "val_acc": t.values[0]
        if t.state == TrialState.COMPLETE
        else (curve[-1] if curve else None),
        "rung": int(attrs.get("rung") or 0),  # the fidelity (search.schedule); 0 before rungs
        "epochs": len(curve),  # epochs trained (fewer than the rung's when pruned)
        "train_images": attrs.get("train_images"),
        "train_time_s": attrs.get("train_time_s"),
        "device": attrs.get("device"),
        "summary": attrs.get("summary"),
        "reason": rejected or attrs.get("error"),
        "cap": attrs.get("cap"),
        "duplicate_of": attrs.get("duplicate_of"),
        "cached": bool(attrs.get("cached")),  # reused from the results cache, not trained
        "promoted_from": attrs.get("promoted_from"),
        "candidate": attrs.get("candidate", t.number if "spec" in attrs else None),
        "reference": attrs.get("reference"),  # the zoo key of a reference network
        "spec": attrs.get("spec"),
    }


def trials_frame(trials: Iterable[FrozenTrial]) -> pd.DataFrame:
    """One row per trial, in trial order, with the columns of ``COLUMNS`` (trials that found
    nothing to do left out)."""
    rows = [_row(t) for t in trials if not t.user_attrs.get("idle")]
    df = pd.DataFrame(rows, columns=COLUMNS)
    for col in (
        "params",
        "macs",
        "act_f32_bytes",
        "act_int8_bytes",
        "receptive_field",
        "cap",
        "duplicate_of",
        "train_images",
        "promoted_from",
        "candidate",
    ):
        df[col] = df[col].astype("Int64")
    df["val_acc"] = df["val_acc"].astype("float64")
    return df.sort_values("number").reset_index(drop=True)
