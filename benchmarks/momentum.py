"""Constant momentum against the momentum cycle OneCycleLR applied before (0.95 -> 0.85 ->
0.95 against the learning rate), on the validation split (the test set is not read).

    python benchmarks/momentum.py --data-dir .data --zoo 001,004 --seeds 3 --epochs 3 \\
        --train-subset 10000

The recipe's ``momentum`` used to be overwritten by OneCycleLR on every step; it is now held
constant. Each zoo network is trained with both, same seeds, data and recipe otherwise;
prints validation accuracy mean ± std over the seeds.
"""

from __future__ import annotations

import argparse
import functools
import statistics
from contextlib import contextmanager
from dataclasses import replace
from unittest import mock

import torch

from budgetnas.space.zoo import ZOO
from budgetnas.trainers.data import load_train_val
from budgetnas.trainers.evaluate import resolve_device
from budgetnas.trainers.recipe import default_recipe
from budgetnas.trainers.train import train


@contextmanager
def cycled_momentum():
    """OneCycleLR with its default momentum cycle (base 0.85, max 0.95): the old recipe."""
    real = torch.optim.lr_scheduler.OneCycleLR
    cycled = functools.partial(real, cycle_momentum=True, base_momentum=0.85, max_momentum=0.95)

    def make(*args, **kwargs):
        kwargs.pop("cycle_momentum", None)
        return cycled(*args, **kwargs)

    with mock.patch.object(torch.optim.lr_scheduler, "OneCycleLR", make):
        yield


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--zoo", default="001,004")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--train-subset", type=int, default=10_000)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device = resolve_device(args.device)
    data = load_train_val(
        "mnist", data_dir=args.data_dir, train_subset=args.train_subset, device=device
    )
    recipe = default_recipe(args.epochs, optimizer="sgd")  # SGD's momentum is measured
    rows = []
    for key in args.zoo.split(","):
        for name in ("cycled 0.85-0.95 (before)", f"constant {recipe.momentum:g} (now)"):
            accs = []
            for seed in range(args.seeds):
                if name.startswith("cycled"):
                    with cycled_momentum():
                        r = train(ZOO[key].spec, data, replace(recipe, seed=seed), device=device)
                else:
                    r = train(ZOO[key].spec, data, replace(recipe, seed=seed), device=device)
                accs.append(r.val_acc)
                print(f"{key} {name} seed {seed}: {r.val_acc:.4f}", flush=True)
            rows.append((key, name, accs))
    print(
        f"\n{args.epochs} epochs on {len(data.train):,} images, default recipe otherwise, "
        f"seeds 0..{args.seeds - 1}, {device}"
    )
    print("| network | momentum | val mean ± std | per seed |\n| --- | --- | --- | --- |")
    for key, name, accs in rows:
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        per_seed = " / ".join(f"{a:.2%}" for a in accs)
        print(f"| seed {key} | {name} | {statistics.fmean(accs):.2%} ± {std:.2%} | {per_seed} |")


if __name__ == "__main__":
    main()
