"""Memory format and precision of a CPU training step: fp32 (what training uses), channels_last,
bf16 autocast, and both, on a seed network's step.

    python benchmarks/cpu_formats.py --threads 1 --reps 60
    python benchmarks/cpu_formats.py --threads 2 --reps 60
    python benchmarks/cpu_formats.py --profile     # torch.profiler's top ops of each variant
    python benchmarks/cpu_formats.py --check --data-dir .data --seeds 1,2,3


The variants are one network (the same weights copied into each) timed side by side in one
process, their repetitions interleaved (one step of each in turn), so that a machine shared
with other work slows them alike. A step is forward, cross-entropy, backward and an SGD update
on a random batch, as the trainer does it (``space.build``'s network, its dropout included).
Prints the median wall-clock and CPU time of each and its ratio to fp32: a variant earns a
place in training only where it is faster here and a 3-seed validation check shows accuracy
unchanged.

``--check``: that validation check. The seed network trained by the trainer (``train``, the
default recipe at --epochs on MNIST's 55,000 training images) in fp32, channels_last and bf16 +
channels_last, one seed of each in turn; validation accuracy mean ± std over the seeds per
variant, and the training time of each run.
"""

from __future__ import annotations

import contextlib
import copy
import statistics
from functools import partial

import steps
import torch
from torch import nn

from budgetnas.space.build import build
from budgetnas.space.zoo import ZOO

VARIANTS = ("fp32", "channels_last", "bf16 autocast", "bf16 + channels_last")


def make_step(name: str, net: nn.Module, x: torch.Tensor, y: torch.Tensor):
    """One training step of ``net`` in the format and precision ``name`` says."""
    last = "channels_last" in name
    if last:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    context = contextlib.nullcontext
    if "bf16" in name:
        context = partial(torch.autocast, "cpu", dtype=torch.bfloat16)
    return steps.make_step(net, x, y, context)


TRAINED = {
    "fp32": {},
    "channels_last": {"channels_last": True},
    "bf16 + channels_last": {"precision": "bf16", "channels_last": True},
}


def check(args) -> None:
    """Validation accuracy and training time of the seed network per variant and seed."""
    from budgetnas.trainers.data import load_train_val
    from budgetnas.trainers.recipe import default_recipe
    from budgetnas.trainers.train import train

    data = load_train_val("mnist", data_dir=args.data_dir, train_subset=args.train_subset)
    spec = ZOO[args.zoo].spec
    acc: dict[str, list[float]] = {name: [] for name in TRAINED}
    secs: dict[str, list[float]] = {name: [] for name in TRAINED}
    for seed in [int(s) for s in args.seeds.split(",")]:
        for name, settings in TRAINED.items():
            recipe = default_recipe(args.epochs, seed=seed, **settings)
            result = train(spec, data, recipe)
            acc[name].append(result.val_acc)
            secs[name].append(result.train_time_s)
            print(
                f"seed {seed} {name:<22} val {result.val_acc:.2%} {result.train_time_s:.1f} s",
                flush=True,
            )
    print(
        f"seed {args.zoo}, {args.epochs} epochs x {len(data.train):,} images, "
        f"{args.threads} threads, seeds {args.seeds} (torch {torch.__version__})"
    )
    print(f"{'variant':<24}{'val mean':>10}{'std':>8}{'train s':>9}{'ratio':>7}")
    base = statistics.fmean(secs["fp32"])
    for name in TRAINED:
        std = statistics.stdev(acc[name]) if len(acc[name]) > 1 else float("nan")
        mean_s = statistics.fmean(secs[name])
        print(
            f"{name:<24}{statistics.fmean(acc[name]):>10.2%}{std:>8.2%}{mean_s:>9.1f}"
            f"{mean_s / base:>7.2f}"
        )


def main() -> None:
    args = steps.step_arguments(
        __doc__,
        ("--check", {"action": "store_true", "help": "train the variants (see above)"}),
        ("--data-dir", {"default": None, "help": "holds MNIST/raw (--check)"}),
        ("--epochs", {"type": int, "default": 3, "help": "epochs of --check"}),
        ("--seeds", {"default": "1,2,3", "help": "training seeds of --check"}),
        ("--train-subset", {"type": int, "default": None, "help": "fewer images (--check)"}),
    )
    if args.check:
        check(args)
        return
    x, y = steps.random_batch(args.batch)
    torch.manual_seed(0)
    net = build(ZOO[args.zoo].spec).train()
    variants = {name: make_step(name, copy.deepcopy(net), x, y) for name in VARIANTS}
    if args.profile:
        steps.profile_steps(variants, warmup=args.warmup)
    times, cpu = steps.time_steps(variants, reps=args.reps, warmup=args.warmup)
    print(
        f"seed {args.zoo}, CPU training step, batch {args.batch}, {args.threads} threads, "
        f"median of {args.reps} interleaved steps (torch {torch.__version__})"
    )
    steps.print_ratios(times, cpu, "fp32")


if __name__ == "__main__":
    main()
