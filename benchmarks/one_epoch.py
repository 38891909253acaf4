"""One-epoch recipes compared on the validation split (the test set is not read).

    python benchmarks/one_epoch.py --data-dir .data --zoo 002 --seeds 2

Trains the chosen zoo network for one epoch on the full training split with each recipe and
prints mean validation accuracy over the seeds, so the one-epoch default is chosen on
validation.
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import replace

from budgetnas.space.zoo import ZOO
from budgetnas.trainers.data import load_train_val
from budgetnas.trainers.evaluate import resolve_device
from budgetnas.trainers.recipe import NO_AUGMENT, AugmentConfig, TrainConfig
from budgetnas.trainers.train import train

RECIPES = {
    "b128 lr0.05 aug1": TrainConfig(epochs=1, batch_size=128, lr=0.05),
    "b64 lr0.05 aug0": TrainConfig(epochs=1, batch_size=64, lr=0.05, augment=NO_AUGMENT),
    "b64 lr0.1 aug0": TrainConfig(epochs=1, batch_size=64, lr=0.1, augment=NO_AUGMENT),
    "b32 lr0.05 aug0": TrainConfig(epochs=1, batch_size=32, lr=0.05, augment=NO_AUGMENT),
    "b64 lr0.1 aug0.5": TrainConfig(
        epochs=1, batch_size=64, lr=0.1, augment=AugmentConfig.scaled(0.5)
    ),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--zoo", default="002")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--recipes", default=",".join(RECIPES))
    args = ap.parse_args()
    device = resolve_device(args.device)
    data = load_train_val("mnist", data_dir=args.data_dir, device=device)
    spec = ZOO[args.zoo].spec
    rows = []
    for name in args.recipes.split(","):
        accs = [
            train(spec, data, replace(RECIPES[name], seed=s), device=device).val_acc
            for s in range(args.seeds)
        ]
        rows.append((name, statistics.fmean(accs), min(accs), max(accs)))
        print(f"{name}: {accs}", flush=True)
    print(f"\nzoo {args.zoo}, 1 epoch on {len(data.train):,} images, {args.seeds} seeds, {device}")
    print(f"{'recipe':<18} {'val mean':>8} {'min':>7} {'max':>7}")
    for name, mean, lo, hi in rows:
        print(f"{name:<18} {mean:>8.2%} {lo:>7.2%} {hi:>7.2%}")


if __name__ == "__main__":
    main()
