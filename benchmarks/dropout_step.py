"""The cost of dropout in a CPU training step: seed 001 with and without its dropout layers.

    python benchmarks/dropout_step.py --threads 2 --batch 128 --reps 40
    python benchmarks/dropout_step.py --profile      # torch.profiler's top ops of each variant

Three networks of the same spec, timed side by side in one process, their repetitions
interleaved (one step of each in turn), so that a machine shared with other work slows them
alike: without dropout (every dropout set to 0), with ``nn.Dropout`` (what ``build`` used
before), and with ``space.dropout.ElementDropout`` (what ``build`` uses). A step is forward,
cross-entropy, backward and an SGD update on a random batch. Prints the median of each and
its ratio to the step without dropout: wall-clock time, and the CPU time of this process (the
work done, which other processes on a shared machine inflate less than the wall clock).
"""

from __future__ import annotations

from dataclasses import replace

import torch
from steps import make_step, print_ratios, profile_steps, random_batch, step_arguments, time_steps
from torch import nn

from budgetnas.space.build import build
from budgetnas.space.dropout import ElementDropout
from budgetnas.space.zoo import ZOO


def _with_nn_dropout(net: nn.Module) -> nn.Module:
    """``net`` with every ``ElementDropout`` replaced by the ``nn.Dropout`` of the same p."""
    for module in net.modules():
        for name, child in module.named_children():
            if isinstance(child, ElementDropout):
                setattr(module, name, nn.Dropout(child.p))
    return net


def variants(key: str) -> dict[str, nn.Module]:
    spec = ZOO[key].spec
    bare = replace(
        spec,
        blocks=tuple(replace(b, dropout=0.0) if hasattr(b, "dropout") else b for b in spec.blocks),
        head=replace(spec.head, dropout=0.0),
    )
    torch.manual_seed(0)
    return {
        "without dropout": build(bare).train(),
        "nn.Dropout (before)": _with_nn_dropout(build(spec)).train(),
        "ElementDropout (now)": build(spec).train(),
    }


def main() -> None:
    args = step_arguments(__doc__)
    x, y = random_batch(args.batch)
    steps = {name: make_step(net, x, y) for name, net in variants(args.zoo).items()}
    if args.profile:
        profile_steps(steps, warmup=args.warmup)
    times, cpu = time_steps(steps, reps=args.reps, warmup=args.warmup)
    print(
        f"seed {args.zoo}, CPU training step, batch {args.batch}, {args.threads} threads, "
        f"median of {args.reps} interleaved steps (torch {torch.__version__})"
    )
    print_ratios(times, cpu, "without dropout")


if __name__ == "__main__":
    main()
