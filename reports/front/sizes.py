"""How many sampled candidates each size band got: bands 1.5x wide from the cap down to the
space's smallest target (``min_size_fraction`` of the cap), per cap of a ladder.

Computed here, shown by the search's last lines and report.html; the numbers are tested
exactly, the table only smoke-tested.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pandas as pd

RATIO = 1.5  # each band spans a factor of 1.5 in parameters; the top one cap/1.5 to the cap
SLACK = 1.05  # a last band narrower than this factor is merged into the one above it


@dataclass(frozen=True)
class SizeBand:
    """``count`` candidates with ``low <= params < high`` (the top band includes the cap)."""

    low: float
    high: float
    count: int

    def label(self) -> str:
        if self.low == 0:
            return f"<{_short(self.high)}{_unit(self.high)}"
        low = _short(self.low) + ("" if _unit(self.low) == _unit(self.high) else _unit(self.low))
        return f"{low}-{_short(self.high)}{_unit(self.high)}"


def band_edges(*, cap: int, min_fraction: float) -> list[float]:
    """Band edges from the smallest target up to the cap: cap, cap/1.5, cap/1.5^2, ... while
    above the smallest target (by more than ``SLACK``), then the smallest target."""
    lowest = min_fraction * cap
    edges = [float(cap)]
    while edges[-1] / RATIO > lowest * SLACK:
        edges.append(edges[-1] / RATIO)
    if edges[-1] > lowest:
        edges.append(lowest)
    return edges[::-1]


def size_bands(params: Iterable[int], *, cap: int, min_fraction: float) -> list[SizeBand]:
    """Candidates per band, smallest band first; a band below the smallest target (a
    network that could not grow to its target) only when it holds any. Networks over the
    cap are not counted (they are never trained)."""
    edges = band_edges(cap=cap, min_fraction=min_fraction)
    values = [p for p in params if p <= cap]
    bands = [
        SizeBand(low, high, sum(low <= p < high or (p == cap == high) for p in values))
        for low, high in zip(edges, edges[1:], strict=False)
    ]
    below = sum(p < edges[0] for p in values)
    return ([SizeBand(0.0, edges[0], below)] if below else []) + bands


def sampled_params(df: pd.DataFrame, cap: int, *, default_cap: int) -> list[int]:
    """Parameter counts of the candidates the search sampled and trained for ``cap`` (rung 0,
    neither references nor promotions, finished: complete or pruned) from a
    ``reports.frame.trials_frame``. A failed trial is left out: an interrupted candidate's
    queued copy is the same candidate, counted once, and a candidate that failed on its own
    finished no training. ``default_cap``: the cap of trials stored without one."""
    rows = df[
        df["reference"].isna()
        & df["promoted_from"].isna()
        & (df["rung"] == 0)
        & df["state"].isin(["complete", "pruned"])
        & df["params"].notna()
    ]
    caps = rows["cap"].fillna(default_cap)
    return [int(p) for p in rows.loc[caps == cap, "params"]]


def size_table(df: pd.DataFrame, *, caps: Sequence[int], min_fraction: float) -> pd.DataFrame:
    """One row per (cap, band): cap, band label, low, high and candidates."""
    rows = []
    for cap in caps:
        params = sampled_params(df, cap, default_cap=max(caps))
        for band in size_bands(params, cap=cap, min_fraction=min_fraction):
            rows.append(
                {
                    "cap": cap,
                    "band": band.label(),
                    "low": band.low,
                    "high": band.high,
                    "candidates": band.count,
                }
            )
    return pd.DataFrame(rows, columns=["cap", "band", "low", "high", "candidates"])


def sizes_line(table: pd.DataFrame) -> str:
    """``sizes: 3.0-4.4K: 12 · 4.4-6.7K: 11 · 6.7-10K: 25``; per cap for a ladder."""
    parts = []
    caps = list(dict.fromkeys(table["cap"]))
    for cap in caps:
        rows = table[table["cap"] == cap]
        bands = " · ".join(
            f"{b}: {n}" for b, n in zip(rows["band"], rows["candidates"], strict=False)
        )
        parts.append(bands if len(caps) == 1 else f"under {_short(cap)}{_unit(cap)}: {bands}")
    return "sizes: " + "; ".join(parts)


def _unit(x: float) -> str:
    return "M" if x >= 1e6 else "K" if x >= 1e3 else ""


def _short(x: float) -> str:
    """10000 -> 10, 4444 -> 4.4, 2500000 -> 2.5 (in the unit of ``_unit``)."""
    value = x / 1e6 if x >= 1e6 else x / 1e3 if x >= 1e3 else x
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"
