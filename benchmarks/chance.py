"""How many optimizer steps a candidate needs to leave chance: the floor of a rung's size.

    python benchmarks/chance.py --data-dir .data --steps 5,10,20,40,80,160

A rung ranks candidates only when its training has moved them off chance level. For each data
set (MNIST at 28x28; MNIST at 8x8 on its first 1,293 training images, a small data set like
scikit-learn's digits), each network (the seed networks under the cap that take the images,
and ``--nets`` candidates sampled at random from the default space under ``--budget``)
and each step count, one training of exactly that many optimizer steps
with the default recipe (its one-cycle schedule over those steps; one epoch on ``steps x
batch`` images, or whole epochs on all images when the data set is smaller), then the
validation accuracy. Prints, per data set and step count, the median and the least accuracy
over the networks and how many are still within 1.5x of chance (10% for 10 classes).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
from dataclasses import replace

import optuna
import torch

from budgetnas.space.choices import SpaceConfig
from budgetnas.space.count import count_params
from budgetnas.space.sample import sample_spec
from budgetnas.space.zoo import ZOO
from budgetnas.trainers.data import DataConfig
from budgetnas.trainers.recipe import default_recipe
from budgetnas.trainers.train import train


def candidates(space: SpaceConfig, budget: int, n: int) -> list:
    """``n`` specs sampled at random (structure and size) from ``space`` under ``budget``."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    out = []
    while len(out) < n:
        trial = study.ask()
        with contextlib.suppress(Exception):  # rejected or infeasible: draw again
            out.append(sample_spec(trial, budget=budget, cfg=space))
        study.tell(trial, 0.0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--steps", default="5,10,20,40,80,160")
    ap.add_argument("--budget", type=int, default=10_000)
    ap.add_argument("--nets", type=int, default=6, help="Sampled candidates per data set.")
    ap.add_argument("--val-size", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    steps = [int(s) for s in args.steps.split(",")]
    sets = {
        "mnist 28x28": DataConfig(data_dir=args.data_dir, val_size=args.val_size),
        "mnist 8x8, 1,293 images": DataConfig(
            data_dir=args.data_dir, val_size=args.val_size, resize=8, train_subset=1293
        ),
    }
    recipe = default_recipe(3, optimizer="sgd")  # as measured (docs/benchmarks.md)
    print(f"default recipe: {recipe.optimizer} lr {recipe.lr} batch {recipe.batch_size}")
    for name, dc in sets.items():
        data = dc.load(torch.device("cpu"))
        info = dc.info
        space = SpaceConfig(
            in_channels=info.in_channels,
            input_size=info.image_size,
            num_classes=info.num_classes,
            norm=(info.mean, info.std),
        )
        nets = {
            f"seed {k}": z.spec
            for k, z in ZOO.items()
            if z.spec.input_size == info.image_size and count_params(z.spec) <= args.budget
        }
        for i, spec in enumerate(candidates(space, args.budget, args.nets)):
            nets[f"cand {i}"] = spec
        chance = 1 / info.num_classes
        print(f"\n{name}: {len(data.train):,} train / {len(data.val):,} val, chance {chance:.0%}")
        print("  networks: " + ", ".join(f"{k} ({count_params(s):,})" for k, s in nets.items()))
        print(f"  {'steps':>5}  {'ep x img':>12}  {'median':>7}  {'least':>7}  {'at chance':>9}")
        for n in steps:
            images = n * recipe.batch_size
            epochs = 1
            if images > len(data.train):
                epochs = math.ceil(n / math.ceil(len(data.train) / recipe.batch_size))
                images = len(data.train)
            sub = data.first(images)
            accs = [
                train(spec, sub, replace(recipe, epochs=epochs, seed=1)).val_acc
                for spec in nets.values()
            ]
            near = sum(1 for a in accs if a < 1.5 * chance)
            print(
                f"  {n:>5}  {f'{epochs} x {images:,}':>12}  {statistics.median(accs):>7.1%}  "
                f"{min(accs):>7.1%}  {near:>5} of {len(accs)}",
                flush=True,
            )


if __name__ == "__main__":
    main()
