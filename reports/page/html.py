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

from budgetnas.reports.front.frame import trials_frame
from budgetnas.reports.front.pareto import best_row, pareto_front, top_rung
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


def _hover(df: pd.DataFrame, what: str = "trial") -> list[str]:
    return [
        f"{what} {r.reference if what == 'seed' else r.number}"
        + (f", rung {r.rung}" if r.rung else "")
        + (f" (promoted from #{int(r.promoted_from)})" if pd.notna(r.promoted_from) else "")
        + "<br>"
        f"{r.params:,} params, {r.macs:,} MACs<br>"
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
                f"<br>peak activation {_kb(4 * peak)} float32, {_kb(peak)} int8"
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


def _table(df: pd.DataFrame, *, references: bool = False) -> str:
    columns = ["params", "macs", "act_f32_bytes", "act_int8_bytes", "val_acc"]
    shown = df[["number", "reference", *columns, "epochs", "train_time_s", "summary"]].copy()
    if references:
        shown.insert(0, "network", [f"seed {k}" for k in shown["reference"]])
    else:
        shown.insert(0, "network", [f"trial {n}" for n in shown["number"]])
    shown = shown.drop(columns=["number", "reference"])
    if "cached" in df and df["cached"].fillna(False).astype(bool).any():
        # reused from the results cache: its train time is the original training's
        shown["reused"] = ["from cache" if c else "" for c in df["cached"].fillna(False)]
    shown["val_acc"] = shown["val_acc"].map(lambda v: f"{v:.2%}")
    shown["params"] = shown["params"].map(lambda n: f"{int(n):,}")
    shown["macs"] = shown["macs"].map(lambda n: "-" if pd.isna(n) else f"{int(n):,}")
    shown["train_time_s"] = shown["train_time_s"].map(lambda t: "-" if pd.isna(t) else f"{t:.1f}")
    shown["act_f32_bytes"] = shown["act_f32_bytes"].map(_kb)
    shown["act_int8_bytes"] = shown["act_int8_bytes"].map(_kb)
    shown = shown.rename(
        columns={
            "macs": "MACs",
            "act_f32_bytes": "peak act. f32",
            "act_int8_bytes": "peak act. int8",
            "val_acc": "val acc",
            "train_time_s": "train s",
        }
    )
    return shown.to_html(index=False, border=0, classes="tbl", escape=True)


def _verified_html(verified: pd.DataFrame | None, ladder: pd.DataFrame | None) -> str:
    """Tables of ``budgetnas verify`` results (test accuracy over seeds) and the ladder."""
    if verified is None or verified.empty:
        return "<p>No architecture verified yet (<code>budgetnas verify RUN</code>).</p>"
    parts = []
    if ladder is not None and not ladder.empty:
        parts.append(
            "<h2>Best verified network under each cap</h2><p>Searched networks only. Chosen by "
            "mean validation accuracy over the seeds, among the networks verified with the "
            "most seeds at that fidelity; test accuracy only reported.</p>"
            + ladder.to_html(index=False, border=0, classes="tbl")
        )
    parts.append(
        "<h2>Verified architectures</h2><p>Retrained from scratch with seeds the search did "
        "not use, at the fidelity shown (<i>recipe vs the target</i>: what differs from the "
        "search's own recipe at the target); final-epoch accuracies. A seed whose training "
        "failed is listed and counts in no mean. Each seed's weights are kept in the run; "
        "<code>budgetnas export</code> ships the best of them.</p>"
        + verified.to_html(index=False, border=0, classes="tbl")
    )
    return "".join(parts)


def _sizes_html(sizes: pd.DataFrame | None) -> str:
    """Sampled candidates per size band (``reports.sizes.size_table``), per cap."""
    if sizes is None or sizes.empty:
        return ""
    shown = sizes[["cap", "band", "candidates"]].copy()
    shown["cap"] = shown["cap"].map(lambda c: f"{int(c):,}")
    return (
        "<h2>Candidates per size band</h2><p>Candidates sampled and trained at the first "
        "rung (complete or pruned), by parameter count; bands 1.5x wide from the cap "
        "down.</p>" + shown.to_html(index=False, border=0, classes="tbl")
    )


def _compute_html(compute: pd.DataFrame | None) -> str:
    """Minutes of training per kind of work and what reuse saved (``reports.compute``)."""
    if compute is None or compute.empty:
        return ""
    shown = pd.DataFrame(
        {
            "what": compute["what"],
            "trainings": compute["trainings"].astype(int),
            "minutes": compute["minutes"].map(lambda m: f"{m:.1f}"),
            "share": compute["share"].map(lambda s: "-" if pd.isna(s) else f"{s:.1%}"),
            "reused": compute["reused"].astype(int),
            "minutes saved": [
                "-" if pd.isna(m) else f"{m:.1f}" + (f" ({k} not known)" if k else "")
                for m, k in zip(compute["saved_minutes"], compute["saved_unknown"], strict=True)
            ],
        }
    )
    return (
        "<h2>Where the compute went</h2><p>Minutes of training per kind of work: pruned and "
        "failed trainings included (they used the device), rejected candidates excluded (never "
        "trained). <i>reused</i>: trainings taken from the results cache or from an identical "
        "trial instead of run, which took no time; <i>minutes saved</i>: what their original "
        "trainings took, where it is known.</p>"
        + shown.to_html(index=False, border=0, classes="tbl")
    )


TARGET_COLUMNS = ["seeds", "failed", "val_mean", "val_std", "test_mean", "test_std"]


def pareto_csv(
    front: pd.DataFrame, refs: pd.DataFrame, target: pd.DataFrame | None
) -> pd.DataFrame:
    """The front's rows (``role`` front) and the reference networks' (``role`` reference) at
    the same fidelity, each with its verification at the target when there is one
    (``verified_seeds``, ``verified_val_mean``, ... over the verify seeds that finished;
    ``verified_failed``: the seeds whose training failed; a std of one seed is empty)."""
    rows = pd.concat([front.assign(role="front"), refs.assign(role="reference")], ignore_index=True)
    names = {c: f"verified_{c}" for c in TARGET_COLUMNS}
    if target is None or target.empty:
        return rows.assign(**{name: None for name in names.values()})
    by_number = target.dropna(subset=["number"]).set_index("number")[TARGET_COLUMNS]
    by_ref = target.dropna(subset=["reference"]).set_index("reference")[TARGET_COLUMNS]
    for column, name in names.items():
        rows[name] = [
            by_ref[column].get(r.reference)
            if r.role == "reference"
            else by_number[column].get(float(r.number), by_number[column].get(r.number))
            for r in rows.itertuples()
        ]
    return rows


def mean_std_text(mean: float | None, std: float | None, seeds: int) -> str:
    """``97.10% ± 0.20%``; one seed has no spread: ``97.10% (1 seed)``; no seed: ``-``."""
    if not seeds or mean is None or pd.isna(mean):
        return "-"
    if seeds == 1 or std is None or pd.isna(std):
        return f"{mean:.2%} (1 seed)"
    return f"{mean:.2%} ± {std:.2%}"


OFF_TARGET = "recipe vs the target"  # the verified table's column: "target" or what differs


def _target_html(
    target: pd.DataFrame | None, rungs: list[str] | None, verified: pd.DataFrame | None = None
) -> str:
    """The answer: the front at the target fidelity verified with new seeds, beside the
    seed networks verified the same way. Verifications with another recipe are named below
    it, with what differs, and not counted in it."""
    if target is None or target.empty:
        return ""
    rows = target.sort_values(["reference", "params"], na_position="first")
    failed = rows["failed"] if "failed" in rows else [0] * len(rows)
    shown = pd.DataFrame(
        {
            "network": rows["label"],
            "params": rows["params"].map(lambda n: f"{int(n):,}"),
            "seeds": [
                f"{int(n)}" + (f" ({int(k)} failed)" if k else "")
                for n, k in zip(rows["seeds"], failed, strict=True)
            ],
            "val mean ± std": [
                mean_std_text(m, s, int(n))
                for m, s, n in zip(rows["val_mean"], rows["val_std"], rows["seeds"], strict=True)
            ],
            "test mean ± std": [
                mean_std_text(m, s, int(n))
                for m, s, n in zip(rows["test_mean"], rows["test_std"], rows["seeds"], strict=True)
            ],
        }
    )
    where = rungs[-1] if rungs else rows["fidelity"].iloc[0]
    note = ""
    if verified is not None and OFF_TARGET in verified:
        other = verified[~verified[OFF_TARGET].isin(["target", "-"])]
        if not other.empty:
            note = (
                "<p>Verified with another recipe, so not in this table (see the verified "
                "architectures below): "
                + html.escape(
                    "; ".join(f"{r['network']}: {r[OFF_TARGET]}" for _, r in other.iterrows())
                )
                + ".</p>"
            )
    return (
        f"<h2>Verified at the target fidelity ({html.escape(where)})</h2><p>The searched "
        "front and the seed networks trained again with new seeds, with the search's own "
        "recipe; chosen on validation, test accuracy only reported. A seed whose training "
        "failed counts in no mean.</p>" + shown.to_html(index=False, border=0, classes="tbl") + note
    )


def _race_html(lines: list[str]) -> str:
    """The race's last lines (``search.racing.race_lines``) as the header shows them: each
    verdict in words, one behind a seed network in red and bold."""
    items = []
    for line in lines:
        text = html.escape(line)
        if line.startswith("verdict") and ": behind " in line:
            text = f"<b style='color:#c00000'>{text}</b>"
        elif line.startswith("verdict"):
            text = f"<b>{text}</b>"
        items.append(f"<li>{text}</li>")
    return "<ul class='race'>" + "".join(items) + "</ul>"


def _html(fig: go.Figure, first: bool) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=first, config={"displaylogo": False})


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
    rungs: list[str] | None = None,
    target: pd.DataFrame | None = None,
    answer: str | None = None,
    race: list[str] | None = None,
    sizes: pd.DataFrame | None = None,
    compute: pd.DataFrame | None = None,
) -> ReportFiles:
    """Write ``report.html``, ``trials.csv`` and ``pareto.csv`` into ``out_dir``.

    ``rungs``: the label of each fidelity rung; ``target``: the networks verified at the
    target fidelity (``search.reporting.at_target``), shown beside the front and added to
    pareto.csv (mean and standard deviation over the seeds, the references' rows too);
    ``sizes``: the candidates per size band (``reports.sizes.size_table``); ``compute``: where
    the compute went (``reports.compute.compute_table``)."""
    out_dir = Path(out_dir)
    df = trials_frame(trials)
    front = pareto_front(df, cap=cap)
    at = top_rung(df)
    refs = df[(df["state"] == "complete") & df["reference"].notna()]
    if at is not None:
        refs = refs[refs["rung"] == at]
    files = ReportFiles(out_dir / "report.html", out_dir / "trials.csv", out_dir / "pareto.csv")
    df.to_csv(files.trials_csv, index=False)
    pareto_csv(front, refs, target).to_csv(files.pareto_csv, index=False)

    by_number = {t.number: t for t in trials}
    best = best_row(df, cap=cap)
    pruned = pruned_figure(df, cap=cap)
    head = f"<h1>{html.escape(title)}</h1><p>cap {cap:,} parameters, dataset {dataset}"
    if counts:
        head += f"; {html.escape(counts_text(counts, rungs=len(rungs or ()) or 1))}"
    head += "</p>"
    if answer:
        head += (
            f"<p><b>verified: {html.escape(answer)}</b> &mdash; what "
            "<code>budgetnas export</code> ships by default</p>"
        )
    if race:
        head += _race_html(race)
    if rungs and len(rungs) > 1:
        head += f"<p>fidelity rungs: {html.escape(' -> '.join(rungs))}</p>"
    if best is not None:
        where = f" at rung {int(best['rung'])}" if rungs and len(rungs) > 1 else ""
        head += (
            f"<p><b>best searched network{where}: trial {int(best['number'])}</b>, "
            f"{int(best['params']):,} parameters, validation accuracy {best['val_acc']:.2%} "
            f"&mdash; {html.escape(str(best['summary']))}</p>"
        )
    page = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>body{{font-family:sans-serif;margin:2em}}"
        ".tbl{border-collapse:collapse}.tbl td,.tbl th{padding:2px 10px;text-align:right}"
        "</style></head><body>",
        head,
        _html(pareto_figure(df, front, cap=cap), True),
        _target_html(target, rungs, verified),
        "<h2>Pareto front (searched networks)</h2>",
        _table(front) if not front.empty else "<p>no completed searched trial yet</p>",
    ]
    if not refs.empty:
        page += [
            "<h2>Seed networks trained in this study (yardsticks, never the answer)</h2>",
            "<p>Hand-made networks trained with the run's recipe, data and seed.</p>",
            _table(refs, references=True),
        ]
    page.append(_sizes_html(sizes))
    page.append(_compute_html(compute))
    page.append(_verified_html(verified, ladder))
    climbing = rungs_figure(df, rungs or [])
    if climbing is not None:
        page.append(_html(climbing, False))
    if pruned is not None:
        page.append(_html(pruned, False))
    if best is not None:
        page.append(_html(curves_figure(by_number, front), False))
        spec = ArchSpec.from_json(best["spec"])
        page.append(_html(breakdown_figure(spec, int(best["number"])), False))
    page.append("</body></html>")
    files.html.write_text("".join(page), encoding="utf-8")
    return files
