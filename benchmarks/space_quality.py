"""The default space against the rich one (``space/rich.toml``), at equal compute: the same
trials, epochs, data, recipe and search seeds.

    python benchmarks/space_quality.py --data-dir .data --out runs/space-quality --budget 10k \\
        --trials 40 --epochs 3 --train-subset 6000 --seeds 0,1,2,3,4,5 --jobs 2

Each space runs one search per seed (motpe, banded pruning, one rung, no reference networks,
no final verification). Printed per seed and as mean ± standard error over seeds: the
hypervolume of the validation front (parameters / cap minimised, accuracy maximised, from
(1.0, --hv-ref)), the best validation accuracy under the cap and under half of it, the front's
size, candidates rejected before training, image-epochs trained and wall time. Only
validation accuracy is read. Each (space, seed) runs in its own process pinned to one core;
finished ones are read back from ``--out``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from common import add_task_options, mean_se, reduced_search, run_all

SPACES = ("default", "rich")


def run_one(args, space: str, seed: int) -> dict:
    from budgetnas.reports.front.frame import trials_frame
    from budgetnas.reports.front.pareto import hypervolume, pareto_front
    from budgetnas.search.pipeline import run_search
    from budgetnas.search.schedule.budgets import trained_image_epochs
    from budgetnas.search.study.runs import open_run, summary_counts

    out = Path(args.out) / space / f"seed{seed}"
    cfg = reduced_search(
        args,
        out,
        seed=seed,
        references="none",
        verify_seeds=0,
        val_size=args.val_size,
        space_file=space,
    )
    start = time.perf_counter()
    if not (out / "config.json").exists():
        run_search(cfg, quiet=True)
    wall = time.perf_counter() - start
    _, study = open_run(out)
    trials = study.get_trials(deepcopy=False)
    df = trials_frame(trials)
    front = pareto_front(df, cap=args.budget)
    done = df[df["state"] == "complete"]

    def best(limit: int) -> float | None:
        under = done[done["params"] <= limit]["val_acc"]
        return float(under.max()) if len(under) else None

    return {
        "space": space,
        "seed": seed,
        "hypervolume": hypervolume(front, cap=args.budget, ref_acc=args.hv_ref),
        "best": best(args.budget),
        "best_half": best(args.budget // 2),
        "front": len(front),
        "rejected": summary_counts(study)["rejected"],
        "image_epochs": trained_image_epochs(trials),
        "wall_s": wall,
        "best_summary": str(front.sort_values("val_acc").iloc[-1]["summary"]) if len(front) else "",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--out", default="runs/space-quality")
    ap.add_argument("--budget", type=int, default=10_000)
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--train-subset", type=int, default=6000)
    ap.add_argument("--val-size", type=int, default=5000)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seeds", default="0,1,2,3,4,5")
    ap.add_argument("--spaces", default=",".join(SPACES))
    ap.add_argument("--hv-ref", type=float, default=0.90)
    add_task_options(ap)
    args = ap.parse_args()
    spaces = args.spaces.split(",")
    results = run_all(__file__, args, spaces, run_one)
    if results is None:  # a child process: its task is done
        return
    print(
        f"\ncap {args.budget:,}, {args.trials} trials x {args.epochs} epochs on "
        f"{args.train_subset:,} images, seeds {args.seeds}; hypervolume from (1.0, {args.hv_ref})"
    )
    print(
        "\n| space | seed | hypervolume | best <= cap | best <= cap/2 | front | rejected | wall s |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        half = f"{r['best_half']:.2%}" if r["best_half"] is not None else "-"
        print(
            f"| {r['space']} | {r['seed']} | {r['hypervolume']:.4f} | {r['best']:.2%} | {half} | "
            f"{r['front']} | {r['rejected']} | {r['wall_s']:.0f} |"
        )
    print(
        "\n| space | hypervolume (mean ± s.e.) | best <= cap | best <= cap/2 | image-epochs | "
        "wall s | seeds |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for space in spaces:
        rs = [r for r in results if r["space"] == space]
        if rs:
            print(
                f"| {space} | {mean_se([r['hypervolume'] for r in rs])} | "
                f"{mean_se([r['best'] for r in rs])} | "
                f"{mean_se([r['best_half'] for r in rs])} | "
                f"{statistics.fmean(r['image_epochs'] for r in rs):,.0f} | "
                f"{statistics.fmean(r['wall_s'] for r in rs):.0f} | {len(rs)} |"
            )
    for r in results:
        print(f"{r['space']} seed {r['seed']} best: {r['best_summary']}")


if __name__ == "__main__":
    main()
