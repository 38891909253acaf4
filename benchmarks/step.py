"""The capturable training step against the loop before it, and fused seeds against separate
trainings, on a CPU, side by side in one process (repetitions interleaved: benchmarks/steps.py).

    python benchmarks/step.py --zoo 001,002 --threads 1,2 --reps 40 --fused 3

For each network and thread count, one optimizer step of each variant in turn:

- ``loop before``: the training loop as it was (batches sliced in Python, torch.optim's SGD and
  OneCycleLR; ``trainers.bench_variants.legacy_step``);
- ``step``: ``trainers.step.TrainStep`` (what ``train`` runs now);
- with ``--fused N``: ``N separate``: one step of each of N separate trainings, and ``N fused``:
  one step of the N seeds fused into one model (``trainers.fused``); their times are per net.

The recipe is the search's default on this CPU (``--precision auto``: bf16 in channels_last
order where the CPU computes bf16 natively), batch 128, seed 001's rotation. Median wall-clock
and CPU milliseconds per step, and each variant's ratio to ``loop before``'s (or, for the fused
rows, to ``N separate``'s).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from steps import print_ratios, time_steps  # noqa: E402

from budgetnas.space.zoo import ZOO  # noqa: E402
from budgetnas.trainers.bench_variants import bench_data, bench_recipe, legacy_step
from budgetnas.trainers.data import default_data_dir, load_train_val  # noqa: E402
from budgetnas.trainers.fused import fused_training  # noqa: E402
from budgetnas.trainers.train import Training, init_model, seeded  # noqa: E402


def new_step(key: str, data, cfg, *, seed: int = 0):
    """``train``'s step for network ``key`` (its first epoch started), as a callable."""
    cpu = torch.device("cpu")
    with seeded(seed, cpu):
        model = init_model(ZOO[key].spec, seed=seed, device=cpu)
        gen = torch.Generator().manual_seed(seed)
        run = Training(model, data, cfg, generators=[gen], classes=10)
    run.step.start_epoch()
    return run.step


def old_step(key: str, data, cfg, *, total: int):
    cpu = torch.device("cpu")
    with seeded(0, cpu):
        model = init_model(ZOO[key].spec, seed=0, device=cpu)
    return legacy_step(
        model, data.train, cfg, total_steps=total, generator=torch.Generator().manual_seed(0)
    )


def fused_step(key: str, data, cfg, *, seeds: int):
    with seeded(0, torch.device("cpu")):
        run = fused_training(
            ZOO[key].spec, data, cfg, seeds=range(seeds), device=torch.device("cpu")
        )
    run.step.start_epoch()
    return run.step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--zoo", default="001,002")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--reps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--fused", type=int, default=0, help="N seeds fused vs N separate (0: off)")
    ap.add_argument("--precision", default="auto", help="auto, fp32 or bf16")
    ap.add_argument("--data-dir", default=None, help="MNIST root [default: $BUDGETNAS_DATA]")
    args = ap.parse_args()
    cpu = torch.device("cpu")
    root = args.data_dir or default_data_dir()
    full = load_train_val("mnist", data_dir=root, val_size=args.batch)
    total = args.warmup + args.reps + 1  # the timed steps stay inside the first epoch
    data = bench_data(full, batch=args.batch, steps=total)
    cfg = bench_recipe(args.batch, args.precision, cpu)
    print(
        f"torch {torch.__version__}, {os.cpu_count()} cores, precision {cfg.precision}"
        f"{' channels_last' if cfg.channels_last else ''}, batch {args.batch}, "
        f"{args.reps} interleaved reps after {args.warmup} warm-up steps"
    )
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        for key in args.zoo.split(","):
            print(f"\n== seed {key}, {threads} thread(s)")
            steps = {
                "loop before": old_step(key, data, cfg, total=total),
                "step": new_step(key, data, cfg),
            }
            times, cpu_ms = time_steps(steps, reps=args.reps, warmup=args.warmup)
            print_ratios(times, cpu_ms, "loop before")
            if args.fused:
                n = args.fused
                separate = [new_step(key, data, cfg, seed=s) for s in range(n)]

                def one_each(steps=separate) -> None:
                    for step in steps:
                        step()

                fused = fused_step(key, data, cfg, seeds=n)
                pair = {f"{n} separate": one_each, f"{n} fused": fused}
                times, cpu_ms = time_steps(pair, reps=args.reps, warmup=args.warmup)
                per_net = {k: [t / n for t in v] for k, v in times.items()}
                per_net_cpu = {k: [t / n for t in v] for k, v in cpu_ms.items()}
                print("per net and step:")
                print_ratios(per_net, per_net_cpu, f"{n} separate")


if __name__ == "__main__":
    main()
