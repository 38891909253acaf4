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

import argparse
import contextlib
import copy
import statistics
import time

import torch
import torch.nn.functional as F
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
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

    def context():
        if "bf16" in name:
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def step() -> None:
        with context():
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
    torch.manual_seed(0)
    net = build(ZOO[args.zoo].spec).train()
    steps = {name: make_step(name, copy.deepcopy(net), x, y) for name in VARIANTS}
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
    base = statistics.median(times["fp32"])
    base_cpu = statistics.median(cpu["fp32"])
    print(f"{'variant':<24}{'wall ms':>9}{'IQR ms':>15}{'x fp32':>9}{'CPU ms':>9}{'x fp32':>9}")
    for name, ts in times.items():
        q = statistics.quantiles(ts, n=4)
        med, med_cpu = statistics.median(ts), statistics.median(cpu[name])
        print(
            f"{name:<24}{med:>9.1f}{f'{q[0]:.1f}-{q[2]:.1f}':>15}{med / base:>9.2f}"
            f"{med_cpu:>9.1f}{med_cpu / base_cpu:>9.2f}"
        )


if __name__ == "__main__":
    main()
