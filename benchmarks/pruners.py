"""Compare the pruners on one search: same seed, same data, same trial count.

    python benchmarks/pruners.py --data-dir .data --trials 24 --epochs 3 --train-subset 3000

Prints, per pruner: wall time, trials completed / pruned, epochs trained in total, the best
validation accuracy, the number of Pareto-front members under the cap, and how many completed
trials and front members have at most half the cap.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import reduced_search

from budgetnas.reports.front.frame import trials_frame
from budgetnas.reports.front.pareto import pareto_front
from budgetnas.search.pipeline import run_search
from budgetnas.search.study.runs import summary_counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--budget", type=int, default=10_000)
    ap.add_argument("--trials", type=int, default=24)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--train-subset", type=int, default=3000)
    ap.add_argument("--val-size", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pruners", default="none,median,hyperband")
    args = ap.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for pruner in args.pruners.split(","):
            cfg = reduced_search(
                args,
                Path(tmp) / pruner,
                val_size=args.val_size,
                batch_size=args.batch_size,
                seed=args.seed,
                pruner=pruner,
            )
            start = time.perf_counter()
            study = run_search(cfg, quiet=True)
            wall = time.perf_counter() - start
            df = trials_frame(study.trials)
            counts = summary_counts(study)
            done = df[df["state"] == "complete"]
            front = pareto_front(df, cap=args.budget)
            rows.append(
                (
                    pruner,
                    wall,
                    counts["complete"],
                    counts["pruned"],
                    int(df["epochs"].sum()),
                    done["val_acc"].max(),
                    len(front),
                    int((done["params"] <= args.budget // 2).sum()),
                    int((front["params"] <= args.budget // 2).sum()),
                )
            )
            print(f"{pruner}: done in {wall:.0f} s", flush=True)
    print(
        f"\n{args.trials} trials x {args.epochs} epochs, cap {args.budget:,}, "
        f"{args.train_subset} train images, seed {args.seed}, device {args.device}"
    )
    print(
        f"{'pruner':<10} {'wall s':>7} {'complete':>8} {'pruned':>6} {'epochs':>6} "
        f"{'best val':>8} {'front':>5} {'complete<=cap/2':>15} {'front<=cap/2':>12}"
    )
    for name, wall, c, p, e, best, front, low, front_low in rows:
        print(
            f"{name:<10} {wall:>7.0f} {c:>8} {p:>6} {e:>6} {best:>8.2%} {front:>5} "
            f"{low:>15} {front_low:>12}"
        )


if __name__ == "__main__":
    main()
