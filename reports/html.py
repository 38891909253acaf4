"""Draw what ``frame`` and ``pareto`` computed: one self-contained plotly page, and CSVs.

The page embeds plotly.js (no CDN), so it opens offline.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
from optuna.trial import FrozenTrial

from budgetnas.reports.frame import trials_frame
from budgetnas.reports.pareto import best_row, pareto_front
from budgetnas.space.count import analyze
from budgetnas.space.memory import activation_memory
from budgetnas.space.spec import ArchSpec
from budgetnas.space.zoo import ZOO


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    trials_csv: Path
    pareto_csv: Path


def _kb(n) -> str:
    return "-" if pd.isna(n) else f"{n / 1024:,.1f} KB"


def _hover(df: pd.DataFrame) -> list[str]:
    return [
        f"trial {r.number}<br>{r.params:,} params, {r.macs:,} MACs<br>"
        f"peak activation {_kb(r.act_f32_bytes)} float32, {_kb(r.act_int8_bytes)} int8<br>"
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


def pareto_figure(df: pd.DataFrame, front: pd.DataFrame, *, cap: int) -> go.Figure:
    fig = go.Figure()
    styles = {
        "complete": dict(color="#1f77b4", symbol="circle", size=8),
        "pruned": dict(color="#b0b0b0", symbol="x", size=7),
    }
    for state, marker in styles.items():
        rows = df[(df["state"] == state) & df["val_acc"].notna() & df["reference"].isna()]
        if rows.empty:
            continue
        label = "completed trials" if state == "complete" else "pruned trials (acc when pruned)"
        fig.add_trace(
            go.Scatter(
                x=rows["params"].astype(int),
                y=rows["val_acc"],
                mode="markers",
                name=label,
                marker=marker,
                hovertext=_hover(rows),
                hoverinfo="text",
            )
        )
    if not front.empty:
        fig.add_trace(
            go.Scatter(
                x=front["params"].astype(int),
                y=front["val_acc"],
                mode="lines+markers",
                line_shape="hv",
                name="Pareto front",
                line=dict(color="#d62728", width=2),
                marker=dict(size=10, color="#d62728"),
                hovertext=_hover(front),
                hoverinfo="text",
            )
        )
    refs = df[(df["state"] == "complete") & df["reference"].notna()]
    if not refs.empty:  # measured in this study, with its recipe and data; published: hover
        fig.add_trace(
            go.Scatter(
                x=refs["params"].astype(int),
                y=refs["val_acc"],
                mode="markers+text",
                text=[f"seed {k}" for k in refs["reference"]],
                textposition="top center",
                name="seed networks (trained in this study)",
                marker=dict(symbol="diamond", size=11, color="#2ca02c"),
                hovertext=[
                    f"{h}<br>seed {r.reference}: {html.escape(ZOO[r.reference].title)}<br>"
                    f"published: {ZOO[r.reference].claimed_accuracy:.2%} test accuracy "
                    f"({html.escape(ZOO[r.reference].claim)})"
                    for h, r in zip(_hover(refs), refs.itertuples(), strict=True)
                ],
                hoverinfo="text",
            )
        )
    fig.add_vline(x=cap, line_dash="dash", line_color="black", annotation_text=f"cap {cap:,}")
    return _accuracy_axes(fig, "Validation accuracy vs parameters", "parameters", 560)


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
                f"<br>peak activation {_kb(4 * peak)} float32, {_kb(peak)} int8"
                for layer, peak in zip(layers, memory, strict=True)
            ],
            hoverinfo="text",
        )
    )
    fig.update_layout(
        title=f"Parameters per block of the best network (trial {number})",
        xaxis_title="parameters",
        yaxis=dict(autorange="reversed"),
        template="plotly_white",
        height=max(300, 40 * len(layers) + 120),
    )
    return fig


def _table(df: pd.DataFrame) -> str:
    columns = ["number", "params", "macs", "act_f32_bytes", "act_int8_bytes", "val_acc"]
    shown = df[[*columns, "epochs", "train_time_s", "summary"]].copy()
    shown["val_acc"] = shown["val_acc"].map(lambda v: f"{v:.2%}")
    return shown.to_html(index=False, border=0, classes="tbl", escape=True)


def _verified_html(verified: pd.DataFrame | None, ladder: pd.DataFrame | None) -> str:
    """Tables of ``budgetnas verify`` results (test accuracy over seeds) and the ladder."""
    if verified is None or verified.empty:
        return "<p>No architecture verified yet (<code>budgetnas verify RUN</code>).</p>"
    parts = []
    if ladder is not None and not ladder.empty:
        parts.append(
            "<h2>Best verified network under each cap</h2><p>Chosen by mean validation "
            "accuracy over the seeds; test accuracy only reported.</p>"
            + ladder.to_html(index=False, border=0, classes="tbl")
        )
    parts.append(
        "<h2>Verified architectures</h2><p>Retrained from scratch with seeds 0..n-1 on the "
        "full training split; final-epoch accuracies.</p>"
        + verified.to_html(index=False, border=0, classes="tbl")
    )
    return "".join(parts)


def write_reports(
    trials: list[FrozenTrial],
    out_dir: Path | str,
    *,
    cap: int,
    dataset: str,
    title: str = "budgetnas search",
    counts: dict | None = None,
    verified: pd.DataFrame | None = None,
    ladder: pd.DataFrame | None = None,
) -> ReportFiles:
    """Write ``report.html``, ``trials.csv`` and ``pareto.csv`` into ``out_dir``."""
    out_dir = Path(out_dir)
    df = trials_frame(trials)
    front = pareto_front(df, cap=cap)
    files = ReportFiles(out_dir / "report.html", out_dir / "trials.csv", out_dir / "pareto.csv")
    df.to_csv(files.trials_csv, index=False)
    front.to_csv(files.pareto_csv, index=False)

    by_number = {t.number: t for t in trials}
    figures = [pareto_figure(df, front, cap=cap)]
    best = best_row(df, cap=cap)
    if best is not None:
        figures.append(curves_figure(by_number, front))
        figures.append(breakdown_figure(ArchSpec.from_json(best["spec"]), int(best["number"])))
    parts = [
        fig.to_html(full_html=False, include_plotlyjs=(i == 0), config={"displaylogo": False})
        for i, fig in enumerate(figures)
    ]
    head = f"<h1>{html.escape(title)}</h1><p>cap {cap:,} parameters, dataset {dataset}"
    if counts:
        head += "; trials: " + ", ".join(
            f"{k} {v}" for k, v in counts.items() if k not in ("rejected_fraction", "rejected_by")
        )
        head += f" (rejected before training: {counts.get('rejected_fraction', 0):.1%})"
    head += "</p>"
    if best is not None:
        head += (
            f"<p>best: trial {int(best['number'])}, {int(best['params']):,} parameters, "
            f"validation accuracy {best['val_acc']:.2%} &mdash; "
            f"{html.escape(str(best['summary']))}</p>"
        )
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>body{{font-family:sans-serif;margin:2em}}"
        ".tbl{border-collapse:collapse}.tbl td,.tbl th{padding:2px 10px;text-align:right}"
        "</style></head><body>"
        + head
        + parts[0]
        + "<h2>Pareto front</h2>"
        + (_table(front) if not front.empty else "<p>no completed trial yet</p>")
        + _verified_html(verified, ladder)
        + "".join(parts[1:])
        + "</body></html>"
    )
    files.html.write_text(page, encoding="utf-8")
    return files
