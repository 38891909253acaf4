"""The report's figures (plotly), drawn from what ``reports.front`` computed: validation error
against parameters with the front and the seed networks, the rungs, the pruned trials, the
front's curves, the best network's parameters per block."""

from __future__ import annotations

import html

import pandas as pd
import plotly.graph_objects as go
from optuna.trial import FrozenTrial

from budgetnas.reports.front.pareto import top_rung
from budgetnas.reports.page.tables import kb
from budgetnas.space.count import analyze
from budgetnas.space.memory import activation_memory
from budgetnas.space.spec import ArchSpec
from budgetnas.space.zoo import ZOO


def _hover(df: pd.DataFrame, what: str = "trial") -> list[str]:
    return [
        f"{what} {r.reference if what == 'seed' else r.number}"
        + (f", rung {r.rung}" if r.rung else "")
        + (f" (promoted from #{int(r.promoted_from)})" if pd.notna(r.promoted_from) else "")
        + "<br>"
        f"{r.params:,} params, {r.macs:,} MACs<br>"
        f"peak activation {kb(r.act_f32_bytes)} float32, {kb(r.act_int8_bytes)} int8<br>"
        f"val acc {r.val_acc:.2%} after {r.epochs} epoch(s)<br>{html.escape(str(r.summary))}"
        for r in df.itertuples()
    ]


def _accuracy_axes(fig: go.Figure, title: str, x: str, height: int) -> go.Figure:
    """The house style of a figure with validation accuracy on its y axis."""
    fig.update_layout(
        title=title,
        xaxis_title=x,
        yaxis_title="validation accuracy",
        yaxis_tickformat=".2%",
        template="plotly_white",
        height=height,
    )
    return fig


ERROR_FLOOR = 1e-4  # a validation error of 0 is drawn at 0.01% (a log axis has no 0)


def error_range(front: pd.DataFrame, refs: pd.DataFrame) -> tuple[float, float]:
    """(lowest, highest) validation error the main figure shows: the searched front and the
    reference networks with room around them, so that a tenth of a point between two front
    members is visible; trials far behind them fall outside."""
    errors = [1 - a for a in (*front["val_acc"], *refs["val_acc"]) if pd.notna(a)]
    if not errors:
        return ERROR_FLOOR, 1.0
    lo = max(ERROR_FLOOR, min(errors)) / 1.5
    hi = min(1.0, max(max(errors), ERROR_FLOOR) * 3)
    return lo, hi


def pareto_figure(
    df: pd.DataFrame, front: pd.DataFrame, *, cap: int, rung: int | None = None
) -> go.Figure:
    """Validation error (log scale) against parameters at one fidelity (``rung``, default the
    highest reached): the completed searched trials, the front, the reference networks;
    scaled to the front (pruned trials have their own figure, ``pruned_figure``)."""
    rung = top_rung(df) if rung is None else rung
    if rung is not None:
        df = df[df["rung"] == rung]
    searched = df[df["reference"].isna() & df["val_acc"].notna()]
    done = searched[searched["state"] == "complete"]
    refs = df[(df["state"] == "complete") & df["reference"].notna()]
    lo, hi = error_range(front, refs)

    def error(rows: pd.DataFrame) -> pd.Series:
        return (1 - rows["val_acc"]).clip(lower=ERROR_FLOOR)

    fig = go.Figure()
    shown = done[error(done) <= hi]
    fig.add_trace(
        go.Scatter(
            x=shown["params"].astype(int),
            y=error(shown),
            mode="markers",
            name="completed trials",
            marker=dict(color="#1f77b4", symbol="circle", size=8, opacity=0.7),
            hovertext=_hover(shown),
            hoverinfo="text",
        )
    )
    if not front.empty:
        fig.add_trace(
            go.Scatter(
                x=front["params"].astype(int),
                y=error(front),
                mode="lines+markers",
                line_shape="hv",
                name="Pareto front (searched)",
                line=dict(color="#d62728", width=2),
                marker=dict(size=10, color="#d62728"),
                hovertext=_hover(front),
                hoverinfo="text",
            )
        )
    if not refs.empty:  # measured in this study, with its recipe and data; published: hover
        fig.add_trace(
            go.Scatter(
                x=refs["params"].astype(int),
                y=error(refs),
                mode="markers+text",
                text=[f"seed {k}" for k in refs["reference"]],
                textposition="top center",
                name="seed networks (trained in this study)",
                marker=dict(symbol="diamond", size=11, color="#2ca02c"),
                hovertext=[
                    f"{h}<br>seed {r.reference}: {html.escape(ZOO[r.reference].title)}<br>"
                    f"published: {ZOO[r.reference].claimed_accuracy:.2%} test accuracy "
                    f"({html.escape(ZOO[r.reference].claim)})"
                    for h, r in zip(_hover(refs, "seed"), refs.itertuples(), strict=True)
                ],
                hoverinfo="text",
            )
        )
    fig.add_vline(x=cap, line_dash="dash", line_color="black", annotation_text=f"cap {cap:,}")
    hidden = len(done) - len(shown)
    note = f"; {hidden} completed trial(s) above {hi:.1%} error not shown" if hidden else ""
    fig.update_layout(
        title=f"Validation error vs parameters (log scale, lower is better{note})",
        xaxis_title="parameters",
        yaxis=dict(
            title="validation error", type="log", tickformat=".2%", range=[_log(lo), _log(hi)]
        ),
        template="plotly_white",
        height=560,
    )
    return fig


def _log(x: float) -> float:
    import math

    return math.log10(x)


def rungs_figure(df: pd.DataFrame, labels: list[str]) -> go.Figure | None:
    """Validation error against parameters at every rung: the candidates thin out and their
    error falls as they climb to the target."""
    if len(labels) < 2:
        return None
    fig = go.Figure()
    done = df[(df["state"] == "complete") & df["reference"].isna() & df["val_acc"].notna()]
    for r, label in enumerate(labels):
        rows = done[done["rung"] == r]
        fig.add_trace(
            go.Scatter(
                x=rows["params"].astype(int),
                y=(1 - rows["val_acc"]).clip(lower=ERROR_FLOOR),
                mode="markers",
                name=f"rung {r}: {label} ({len(rows)})",
                marker=dict(size=6 + 3 * r),
                hovertext=_hover(rows),
                hoverinfo="text",
            )
        )
    fig.update_layout(
        title="Candidates at each rung (promoted: the best of each size band)",
        xaxis_title="parameters",
        yaxis=dict(title="validation error", type="log", tickformat=".2%"),
        template="plotly_white",
        height=460,
    )
    return fig


def pruned_figure(df: pd.DataFrame, *, cap: int) -> go.Figure | None:
    """The pruned searched trials at their validation accuracy when they were cut."""
    rows = df[(df["state"] == "pruned") & df["val_acc"].notna() & df["reference"].isna()]
    if rows.empty:
        return None
    fig = go.Figure(
        go.Scatter(
            x=rows["params"].astype(int),
            y=rows["val_acc"],
            mode="markers",
            name="pruned trials",
            marker=dict(color="#b0b0b0", symbol="x", size=7),
            hovertext=_hover(rows),
            hoverinfo="text",
        )
    )
    fig.update_xaxes(range=[0, cap * 1.02])
    fig.update_yaxes(range=[0, 1.02])
    return _accuracy_axes(
        fig, f"Pruned trials ({len(rows)}): validation accuracy when cut", "parameters", 360
    )


def curves_figure(trials: dict[int, FrozenTrial], front: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    for r in front.itertuples():
        curve = trials[r.number].user_attrs.get("val_curve") or []
        fig.add_trace(
            go.Scatter(
                x=list(range(1, len(curve) + 1)),
                y=curve,
                mode="lines+markers",
                name=f"#{r.number} ({r.params:,})",
            )
        )
    fig.update_xaxes(dtick=1)
    return _accuracy_axes(fig, "Validation curves of the front", "epoch", 420)


def breakdown_figure(spec: ArchSpec, number: int) -> go.Figure:
    layers = analyze(spec).layers
    memory = activation_memory(spec).blocks
    names = [
        f"{i}. {layer.name}" if layer.index else f"head: {layer.name}"
        for i, layer in enumerate(layers, 1)
    ]
    fig = go.Figure(
        go.Bar(
            x=[layer.params for layer in layers],
            y=names,
            orientation="h",
            hovertext=[
                f"{layer.params:,} params, {layer.macs:,} MACs<br>"
                f"{layer.in_shape} -> {layer.out_shape}, receptive field {layer.receptive_field}"
                f"<br>peak activation {kb(4 * peak)} float32, {kb(peak)} int8"
                for layer, peak in zip(layers, memory, strict=True)
            ],
            hoverinfo="text",
        )
    )
    fig.update_layout(
        title=f"Parameters per block of the best searched network (trial {number})",
        xaxis_title="parameters",
        yaxis=dict(autorange="reversed"),
        template="plotly_white",
        height=max(300, 40 * len(layers) + 120),
    )
    return fig
