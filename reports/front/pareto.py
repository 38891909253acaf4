"""The Pareto front of (parameters, validation accuracy): fewer parameters, higher accuracy.

Computed exactly from the completed trials; the plots only draw what this returns.
"""

from __future__ import annotations

import math

import pandas as pd


def top_rung(df: pd.DataFrame) -> int | None:
    """The highest rung (fidelity) a completed searched row reached; None without rows."""
    if "rung" not in df:
        return None
    rows = df[df["state"] == "complete"]
    if "reference" in rows:
        rows = rows[rows["reference"].isna()]
    return int(rows["rung"].max()) if len(rows) else None


def pareto_front(
    df: pd.DataFrame,
    *,
    cap: int | None = None,
    size: str = "params",
    score: str = "val_acc",
    rung: int | None = None,
) -> pd.DataFrame:
    """The non-dominated completed rows of ``df`` (with ``size <= cap`` when given) at one
    fidelity: ``rung``, by default the highest rung a searched row reached (accuracies at
    different fidelities are not compared).

    Only searched networks make the front: reference networks (rows with a ``reference``)
    are yardsticks drawn beside it, never part of the answer. Row a dominates row b when a has
    no more parameters and no lower accuracy, and is strictly better in one of them. Rows
    equal in both are kept together. Sorted by size, ascending.
    """
    rows = df[(df["state"] == "complete") & df[size].notna() & df[score].notna()]
    if "reference" in rows:
        rows = rows[rows["reference"].isna()]
    if "rung" in rows:
        at = top_rung(df) if rung is None else rung
        rows = rows[rows["rung"] == at]
    if "duplicate_of" in rows:  # a reused result is the same point as its original
        rows = rows[rows["duplicate_of"].isna()]
    if cap is not None:
        rows = rows[rows[size] <= cap]
    rows = rows.sort_values([size, score, "number"], ascending=[True, False, True])
    keep = []
    best_smaller = -math.inf  # best score among rows with strictly fewer parameters
    for _, group in rows.groupby(size, sort=True):
        top = group[score].max()
        if top > best_smaller:
            keep.extend(group.index[group[score] == top])
        best_smaller = max(best_smaller, top)
    return rows.loc[keep].reset_index(drop=True)


def best_row(
    df: pd.DataFrame, *, cap: int | None = None, rung: int | None = None
) -> pd.Series | None:
    """The most accurate completed searched row under ``cap`` (ties: fewer parameters, earlier
    trial); never a reference network."""
    front = pareto_front(df, cap=cap, rung=rung)
    if front.empty:
        return None
    return front.sort_values(["val_acc", "params", "number"], ascending=[False, True, True]).iloc[0]


def hypervolume(front: pd.DataFrame, *, cap: int, ref_acc: float = 0.90) -> float:
    """The area a front dominates in (parameters / cap, accuracy), from the reference point
    (1.0, ``ref_acc``): parameters minimised, accuracy maximised. Points at or below
    ``ref_acc`` or over the cap add nothing. Exact (a sum of rectangles)."""
    points = sorted(
        (float(p) / cap, float(a))
        for p, a in zip(front["params"], front["val_acc"], strict=True)
        if p <= cap and a > ref_acc
    )
    area, best = 0.0, ref_acc
    edges = [x for x, _ in points[1:]] + [1.0] if points else []
    for (x, acc), right in zip(points, edges, strict=True):
        best = max(best, acc)  # the best accuracy reachable with at most x * cap parameters
        area += (right - x) * (best - ref_acc)
    return area
