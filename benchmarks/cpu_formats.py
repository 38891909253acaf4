"""Memory format and precision of a CPU training step: fp32 (what training uses), channels_last,
bf16 autocast, and both, on a seed network's step.

    python benchmarks/cpu_formats.py --threads 1 --reps 60
    python benchmarks/cpu_formats.py --threads 2 --reps 60
    python benchmarks/cpu_formats.py --profile     # torch.profiler's top ops of each variant

The variants are one network (the same weights copied into each) timed side by side in one
process, their repetitions interleaved (one step of each in turn), so that a machine shared
with other work slows them alike. A step is forward, cross-entropy, backward and an SGD update
on a random batch, as the trainer does it (``space.build``'s network, its dropout included).
Prints the median wall-clock and CPU time of each and its ratio to fp32: a variant earns a
place in training only where it is faster here and a 3-seed validation check shows accuracy
unchanged.
"""

from __future__ import annotations

import contextlib
import copy
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


def main() -> None:
    args = steps.step_arguments(__doc__)
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
