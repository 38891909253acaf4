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
from budgetnas.reports.page.figures import (
    breakdown_figure,
    curves_figure,
    pareto_figure,
    pruned_figure,
    rungs_figure,
)
from budgetnas.reports.page.tables import (
    compute_html,
    pareto_csv,
    race_html,
    sizes_html,
    table,
    target_html,
    verified_html,
)
from budgetnas.search.study.runs import counts_text
from budgetnas.space.spec import ArchSpec


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    trials_csv: Path
    pareto_csv: Path


def _html(fig: go.Figure, first: bool) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=first, config={"displaylogo": False})


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
    pareto_csv(front, refs, target, df).to_csv(files.pareto_csv, index=False)

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
        head += race_html(race)
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
        target_html(target, rungs, verified),
        "<h2>Pareto front (searched networks)</h2>",
        table(front) if not front.empty else "<p>no completed searched trial yet</p>",
    ]
    if not refs.empty:
        page += [
            "<h2>Seed networks trained in this study (yardsticks, never the answer)</h2>",
            "<p>Hand-made networks trained with the run's recipe, data and seed.</p>",
            table(refs, references=True),
        ]
    page.append(sizes_html(sizes))
    page.append(compute_html(compute))
    page.append(verified_html(verified, ladder))
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
