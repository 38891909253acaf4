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

import argparse
import statistics
import time
from dataclasses import replace

import torch
import torch.nn.functional as F
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


def make_step(net: nn.Module, x: torch.Tensor, y: torch.Tensor):
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--zoo", default="001")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--profile", action="store_true", help="Print torch.profiler's top ops.")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, 1, 28, 28, generator=gen)
    y = torch.randint(0, 10, (args.batch,), generator=gen)
    steps = {name: make_step(net, x, y) for name, net in variants(args.zoo).items()}
    for step in steps.values():
        for _ in range(args.warmup):
            step()
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        for name, step in steps.items():
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(10):
                    step()
            print(f"== {name}")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8))
    times: dict[str, list[float]] = {name: [] for name in steps}
    cpu: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.reps):
        for name, step in steps.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            step()
            times[name].append((time.perf_counter() - start) * 1e3)
            cpu[name].append((time.process_time() - start_cpu) * 1e3)
    print(
        f"seed {args.zoo}, CPU training step, batch {args.batch}, {args.threads} threads, "
        f"median of {args.reps} interleaved steps (torch {torch.__version__})"
    )
    base = statistics.median(times["without dropout"])
    base_cpu = statistics.median(cpu["without dropout"])
    print(
        f"{'variant':<24}{'wall ms':>9}{'IQR ms':>15}{'x without':>11}"
        f"{'CPU ms':>9}{'x without':>11}"
    )
    for name, ts in times.items():
        q = statistics.quantiles(ts, n=4)
        med, med_cpu = statistics.median(ts), statistics.median(cpu[name])
        print(
            f"{name:<24}{med:>9.1f}{f'{q[0]:.1f}-{q[2]:.1f}':>15}{med / base:>11.2f}"
            f"{med_cpu:>9.1f}{med_cpu / base_cpu:>11.2f}"
        )


if __name__ == "__main__":
    main()
