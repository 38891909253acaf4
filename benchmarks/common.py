"""What the benchmarks share: one search at the reduced fidelity their flags give, and running
(strategy, seed) tasks in processes pinned to one core each."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from budgetnas.search.study.config import SearchConfig
from budgetnas.search.study.options import new_config


def reduced_search(args: argparse.Namespace, out: Path, **settings: Any) -> SearchConfig:
    """The config of one benchmark search: --budget, --trials, --epochs, --train-subset,
    --data-dir and --device from the command line, the rest from ``settings`` (one rung
    unless they say otherwise: the sampler, pruner and space benchmarks compare searches at
    one fidelity)."""
    settings = {"rungs": 1, "precision": "fp32", **settings}  # as their documented runs
    return new_config(
        out=out,
        caps=(args.budget,),
        trials=args.trials,
        epochs=args.epochs,
        train_subset=args.train_subset,
        data_dir=args.data_dir,
        device=args.device,
        **settings,
    )


def run_tasks(
    script: str,
    tasks: list[tuple[str, int]],
    *,
    out: Path,
    result: str,
    jobs: int,
    cores: list[int] | None = None,
) -> None:
    """Run ``script`` again with ``--one strategy:seed`` for each task whose ``result`` file
    is not in ``out/strategy/seed{seed}`` yet (one stopped midway starts over), ``jobs`` at
    once, each pinned to one core with one thread (so the timings of tasks running side by
    side stay comparable)."""
    cores = cores or list(range(os.cpu_count() or 1))
    pending = [t for t in tasks if not (out / t[0] / f"seed{t[1]}" / result).exists()]
    running: list[tuple[subprocess.Popen, int]] = []
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    while pending or running:
        busy = {core for _, core in running}
        while pending and len(running) < jobs:
            strategy, seed = pending.pop(0)
            # a task stopped midway (no result file) starts over: its timing must be whole
            shutil.rmtree(out / strategy / f"seed{seed}", ignore_errors=True)
            core = next(c for c in cores if c not in busy)
            busy.add(core)
            cmd = [sys.executable, script, *sys.argv[1:], "--one", f"{strategy}:{seed}"]
            env = {**os.environ, "OMP_NUM_THREADS": "1"}
            with open(logs / f"{strategy}-{seed}.log", "w") as f:
                proc = subprocess.Popen(
                    ["taskset", "-c", str(core), *cmd], env=env, stdout=f, stderr=f
                )
            running.append((proc, core))
            print(f"started {strategy} seed {seed} on core {core}", flush=True)
        time.sleep(2)
        for proc, core in list(running):
            if proc.poll() is not None:
                running.remove((proc, core))
                if proc.returncode:
                    print(f"a task failed ({proc.returncode}); see {logs}", flush=True)


RESULT = "result.json"  # a finished task's figures, in out/kind/seed{seed}/


def add_task_options(ap: argparse.ArgumentParser) -> None:
    """--jobs and --cores (how the tasks run), and the hidden --one of a child process."""
    ap.add_argument("--jobs", type=int, default=2, help="processes at once, one core each")
    ap.add_argument("--cores", default=None, help="cores to pin them to, e.g. 1 [default: all]")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # kind:seed, in a child process


def run_all(
    script: str,
    args: argparse.Namespace,
    kinds: list[str],
    run_one: Callable[[argparse.Namespace, str, int], dict],
) -> list[dict] | None:
    """In a child process (``--one kind:seed``): run that task, write its result and return
    None. Otherwise: run every (kind, seed) task of ``--seeds`` not finished in ``--out``
    yet (``run_tasks``) and return the results of all finished ones, in task order."""
    import json

    out = Path(args.out)
    if args.one:
        kind, seed = args.one.split(":")
        result = run_one(args, kind, int(seed))
        (out / kind / f"seed{seed}" / RESULT).write_text(json.dumps(result, indent=2))
        return None
    tasks = [(kind, int(seed)) for seed in args.seeds.split(",") for kind in kinds]
    cores = [int(c) for c in args.cores.split(",")] if args.cores else None
    run_tasks(script, tasks, out=out, result=RESULT, jobs=args.jobs, cores=cores)
    return read_results(out, tasks, RESULT)


def read_results(out: Path, tasks: list[tuple[str, int]], result: str) -> list[dict]:
    """The result files of the finished tasks, in task order."""
    import json

    paths = [out / name / f"seed{seed}" / result for name, seed in tasks]
    return [json.loads(p.read_text()) for p in paths if p.exists()]


def mean_se(values: list[float | None]) -> str:
    """``mean ± standard error`` over the seeds that have a value (one value: itself)."""
    import math
    import statistics

    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    se = statistics.stdev(values) / math.sqrt(len(values))
    return f"{statistics.fmean(values):.4f} ± {se:.4f}"
