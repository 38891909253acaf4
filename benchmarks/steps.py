"""Training steps timed side by side in one process (dropout_step.py, cpu_formats.py): each
variant's repetitions interleaved with the others' (one step of each in turn), so that a
machine shared with other work slows them alike."""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def step_arguments(doc: str, *extra: tuple[str, dict]) -> argparse.Namespace:
    """The command line of a step benchmark (``extra``: its own options, as (flag, keyword
    arguments of ``add_argument``)); sets torch's thread count from it."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawTextHelpFormatter)
    for flag, kwargs in extra:
        ap.add_argument(flag, **kwargs)
    ap.add_argument("--zoo", default="001")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--profile", action="store_true", help="Print torch.profiler's top ops.")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    return args


def random_batch(batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded batch of 1x28x28 images in [0, 1] and labels."""
    gen = torch.Generator().manual_seed(0)
    return torch.rand(batch, 1, 28, 28, generator=gen), torch.randint(
        0, 10, (batch,), generator=gen
    )


def make_step(
    net: nn.Module, x: torch.Tensor, y: torch.Tensor, context=contextlib.nullcontext
) -> Callable[[], None]:
    """One training step: forward (in ``context()``), cross-entropy, backward, SGD update."""
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        with context():
            loss = F.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def profile_steps(steps: dict[str, Callable[[], None]], *, warmup: int, reps: int = 10) -> None:
    """Print torch.profiler's top ops of ``reps`` steps of each variant, after ``warmup``."""
    from torch.profiler import ProfilerActivity, profile

    for name, step in steps.items():
        for _ in range(warmup):
            step()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(reps):
                step()
        print(f"== {name}")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8))


def time_steps(
    steps: dict[str, Callable[[], None]], *, reps: int, warmup: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall-clock and CPU milliseconds of each step of each variant, after ``warmup`` steps."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    cpu: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(reps):
        for name, step in steps.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            step()
            times[name].append((time.perf_counter() - start) * 1e3)
            cpu[name].append((time.process_time() - start_cpu) * 1e3)
    return times, cpu


def print_ratios(times: dict[str, list[float]], cpu: dict[str, list[float]], base: str) -> None:
    """Median wall-clock and CPU time of each variant and its ratio to ``base``'s."""
    wall0, cpu0 = statistics.median(times[base]), statistics.median(cpu[base])
    print(f"ratios to {base!r}")
    print(f"{'variant':<24}{'wall ms':>9}{'IQR ms':>15}{'ratio':>8}{'CPU ms':>9}{'ratio':>8}")
    for name, ts in times.items():
        q = statistics.quantiles(ts, n=4)
        med, med_cpu = statistics.median(ts), statistics.median(cpu[name])
        print(
            f"{name:<24}{med:>9.1f}{f'{q[0]:.1f}-{q[2]:.1f}':>15}{med / wall0:>8.2f}"
            f"{med_cpu:>9.1f}{med_cpu / cpu0:>8.2f}"
        )
