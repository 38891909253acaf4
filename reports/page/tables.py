"""The report's tables as HTML, and pareto.csv's rows: the front and the seed networks, the
verified networks and the ladder, the networks verified at the target, candidates per size
band, where the compute went, the race's lines."""

from __future__ import annotations

import html

import pandas as pd


def table(df: pd.DataFrame, *, references: bool = False) -> str:
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
    shown["act_f32_bytes"] = shown["act_f32_bytes"].map(kb)
    shown["act_int8_bytes"] = shown["act_int8_bytes"].map(kb)
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


def verified_html(verified: pd.DataFrame | None, ladder: pd.DataFrame | None) -> str:
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


def sizes_html(sizes: pd.DataFrame | None) -> str:
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


def compute_html(compute: pd.DataFrame | None) -> str:
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
    front: pd.DataFrame, refs: pd.DataFrame, target: pd.DataFrame | None, trials: pd.DataFrame
) -> pd.DataFrame:
    """The front's rows (``role`` front), the searched networks off the front verified at
    the target (``role`` verified: the race's other entrants, ``verify --trial``; the answer
    may be one of them) and the reference networks' (``role`` reference) at the same
    fidelity, each with its verification at the target when there is one (``verified_seeds``,
    ``verified_val_mean``, ... over the verify seeds that finished; ``verified_failed``: the
    seeds whose training failed; a std of one seed is empty). ``trials``: every trial's row
    (``trials_frame``), where the verified rows are taken from."""
    names = {c: f"verified_{c}" for c in TARGET_COLUMNS}
    if target is None or target.empty:
        rows = pd.concat(
            [front.assign(role="front"), refs.assign(role="reference")], ignore_index=True
        )
        return rows.assign(**{name: None for name in names.values()})
    numbers = set(target["number"].dropna().astype(int)) - set(front["number"].astype(int))
    off = trials[trials["number"].isin(numbers)].sort_values("params")
    parts = [front.assign(role="front"), off.assign(role="verified"), refs.assign(role="reference")]
    rows = pd.concat([p for p in parts if not p.empty] or parts[:1], ignore_index=True)
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


def target_html(
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


def race_html(lines: list[str]) -> str:
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


def kb(n) -> str:
    return "-" if pd.isna(n) else f"{n / 1024:,.1f} KB"
