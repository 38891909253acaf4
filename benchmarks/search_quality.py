"""The search itself, measured: which strategy finds the best accuracy-vs-parameters front for
the same number of sampled trials, on the same data with the same recipe.

    python benchmarks/search_quality.py --data-dir .data --out runs/search-quality

Each strategy runs one search per seed (same data subset, recipe and trial count); the run
folders are kept under --out and a finished one is read back instead of searched again, so
the benchmark can be stopped and continued. Prints per seed and as mean over seeds:

- hypervolume of the validation front of the *sampled* trials (reference networks left
  out), with parameters as a fraction of the cap (minimised) and validation accuracy
  (maximised), from the reference point (1.0, --hv-ref);
- the best validation accuracy of a sampled network under the cap and under half of it;
- epochs trained in the whole study (reference networks included) and the search's wall time;
- and the reference networks' validation accuracy at the same fidelity (trained in the
  studies that have them; identical across those studies on the CPU).

Only validation accuracy is read: the test split is not loaded.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import pandas as pd
from common import reduced_search

from budgetnas.reports.front.frame import trials_frame
from budgetnas.reports.front.pareto import hypervolume, pareto_front
from budgetnas.search.pipeline import run_search
from budgetnas.search.study.config import CONFIG_FILE
from budgetnas.search.study.runs import finished, open_run

# name -> (sampler, pruner, references); "tpe" is the default before this benchmark existed
STRATEGIES = {
    "random": ("random", "none", "none"),
    "motpe-np": ("motpe", "none", "all"),
    "tpe": ("tpe", "banded", "none"),
    "tpe+refs": ("tpe", "banded", "all"),
    "motpe": ("motpe", "banded", "all"),
    "nsga2": ("nsga2", "banded", "all"),
}
RESULT_FILE = "benchmark.json"


def measure(run: Path, cap: int, hv_ref: float) -> dict:
    """The figures of one finished search, read from its study."""
    _, study = open_run(run)
    df = trials_frame(study.trials)
    sampled = df[df["reference"].isna()]
    front = pareto_front(sampled, cap=cap)
    done = sampled[sampled["state"] == "complete"]
    refs = df[(df["state"] == "complete") & df["reference"].notna()]

    def best(limit: int) -> float | None:
        under = done[done["params"] <= limit]["val_acc"]
        return float(under.max()) if len(under) else None

    # the front as the search went: (epochs trained so far, hypervolume of the sampled trials
    # finished so far), after every trial in the order they ran
    trained = df["epochs"].where(df["duplicate_of"].isna(), 0)  # a reused result trains nothing
    curve, epochs = [], 0
    for row, n in zip(df.itertuples(), trained, strict=True):
        epochs += int(n)
        so_far = sampled[sampled["number"] <= row.number]
        curve.append((epochs, hypervolume(pareto_front(so_far, cap=cap), cap=cap, ref_acc=hv_ref)))
    return {
        "hv_curve": curve,
        "hypervolume": hypervolume(front, cap=cap, ref_acc=hv_ref),
        "best": best(cap),
        "best_half": best(cap // 2),
        "front": len(front),
        "complete": int(len(done)),
        "epochs": int(trained.sum()),
        "references": {str(r.reference): float(r.val_acc) for r in refs.itertuples()},
        "sampled_finished": finished(study),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--out", required=True, help="folder for the runs and benchmark.json")
    ap.add_argument("--budget", type=int, default=10_000)
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--train-subset", type=int, default=6000)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--hv-ref", type=float, default=0.90)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / RESULT_FILE
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    seeds = [int(s) for s in args.seeds.split(",")]
    names = args.strategies.split(",")
    for seed in seeds:  # seed-major: every strategy has a row before the next seed starts
        for name in names:
            key = f"{name}/seed{seed}"
            run = out / name / f"seed{seed}"
            if key in results:
                results[key].update(measure(run, args.budget, args.hv_ref))  # read again
                continue
            sampler, pruner, references = STRATEGIES[name]
            cfg = reduced_search(
                args,
                run,
                seed=seed,
                sampler=sampler,
                pruner=pruner,
                references=references,
            )
            resume = (run / CONFIG_FILE).is_file()
            start = time.perf_counter()
            run_search(cfg, resume=resume, quiet=True)
            wall = time.perf_counter() - start
            row = measure(run, args.budget, args.hv_ref)
            row["wall_s"] = None if resume else round(wall, 1)
            results[key] = row
            results_path.write_text(json.dumps(results, indent=2, sort_keys=True))
            print(f"{key}: {json.dumps(row)}", flush=True)
    results_path.write_text(json.dumps(results, indent=2, sort_keys=True))
    report(results, names, seeds, args)
    equal_compute(results, names, seeds)


def hv_at(curve: list, epochs: int) -> float:
    """Hypervolume of the front after the trials that fit in ``epochs`` epochs."""
    return max([hv for e, hv in curve if e <= epochs], default=0.0)


def equal_compute(results: dict, names: list[str], seeds: list[int]) -> None:
    """Every strategy cut at the epochs the most frugal one trained, per seed."""
    print(
        "\nat equal compute: each search cut after the trials that fit in the epochs the "
        "most frugal strategy trained for that seed"
    )
    print("| strategy | " + " | ".join(f"seed {s}" for s in seeds) + " | mean |")
    print("| --- |" + " --- |" * (len(seeds) + 1))
    budget = {
        s: min(results[f"{n}/seed{s}"]["epochs"] for n in names if f"{n}/seed{s}" in results)
        for s in seeds
    }
    for name in names:
        keys = [f"{name}/seed{s}" for s in seeds]
        if not all(k in results for k in keys):
            continue
        hvs = [hv_at(results[k]["hv_curve"], budget[s]) for k, s in zip(keys, seeds, strict=True)]
        cells = " | ".join(f"{hv:.4f} ({budget[s]} ep)" for hv, s in zip(hvs, seeds, strict=True))
        print(f"| {name} | {cells} | {statistics.fmean(hvs):.4f} |")


def _mean(values: list) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    return f"{statistics.fmean(values):.4f}"


def report(results: dict, names: list[str], seeds: list[int], args) -> None:
    print(
        f"\nMNIST, {args.train_subset:,} training images, {args.epochs} epochs, cap "
        f"{args.budget:,}, {args.trials} sampled trials, seeds {seeds}, device {args.device}; "
        f"hypervolume reference point (1.0, {args.hv_ref})"
    )
    rows = []
    for name in names:
        per = [results[f"{name}/seed{s}"] for s in seeds if f"{name}/seed{s}" in results]
        if not per:
            continue
        for s, r in zip(seeds, per, strict=False):
            rows.append((f"{name} seed {s}", r))
        mean = {
            k: _mean([r[k] for r in per])
            for k in ("hypervolume", "best", "best_half", "front", "epochs", "wall_s")
        }
        rows.append((f"**{name} mean**", mean))
    print(
        "| strategy | hypervolume | best val <= cap | best val <= cap/2 | front | epochs | wall s |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")

    def fmt(v, pct=False):
        if v is None or v == "-":
            return "-"
        v = float(v)
        return f"{v:.2%}" if pct else (f"{v:.4f}" if v < 1 else f"{v:.0f}")

    for label, r in rows:
        print(
            f"| {label} | {fmt(r['hypervolume'])} | {fmt(r['best'], True)} | "
            f"{fmt(r['best_half'], True)} | {fmt(r['front'])} | {fmt(r['epochs'])} | "
            f"{fmt(r['wall_s'])} |"
        )
    refs = pd.DataFrame(
        [
            {"seed": key.split("seed")[1], "network": net, "val_acc": acc}
            for key, r in results.items()
            for net, acc in r["references"].items()
        ]
    )
    if not refs.empty:
        table = refs.drop_duplicates(["seed", "network"]).pivot(
            index="network", columns="seed", values="val_acc"
        )
        print("\nreference networks, validation accuracy at the same fidelity, by seed:")
        print(table.map(lambda v: f"{v:.2%}").to_markdown())


if __name__ == "__main__":
    main()
