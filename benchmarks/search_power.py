"""Search power: the search as it was (an older commit) against today's, at equal wall time.

Each search runs the command a user types, `budgetnas search --budget CAP --epochs E
--budget-time T --seed S` with every other default, on two data sets: MNIST and MNIST reduced
to 14x14 (an .npz made here from the same files, train and test), shown at 28x28 (`--resize
28`) so that the seed networks, written for 28x28, are its yardsticks too. The older commit
runs from its own checkout and interpreter (--old-python); today's with the cache off
(--no-cache), so neither strategy gets another's trainings free. Per search it prints:

- the wall time, and the rung-0 candidates per size band (bands 1.5x wide down from the cap);
- where the compute went (sampled candidates, promotions, references, verification);
- the verified best under the cap and under half of it (chosen on validation: the mean over
  the search's verify seeds), validation and test mean ± std over those seeds;
- seed networks 001 and 002 trained with the same recipe and the same seeds: `budgetnas
  verify RUN --zoo 001 --zoo 002` on today's run of that search seed (one cache shared by these
  yardstick trainings only, so a seed common to two runs is trained once).

Then the last search (MNIST, first seed) is run twice more with one fresh results cache: the
second run's lines say what it reused.

The older checkout, with its own interpreter (the packages of today's environment serve it):

    git worktree add ../old 568f538
    python -m venv ../old/.venv
    echo "$(python -c 'import site; print(site.getsitepackages()[0])')" \\
        > "$(../old/.venv/bin/python -c 'import site; print(site.getsitepackages()[0])')/deps.pth"
    ../old/.venv/bin/python -m pip install --no-deps -e ../old

    python benchmarks/search_power.py --old-python ../old/.venv/bin/python \\
        --data-dir .data --out runs/search-power

Sized to about 90 minutes on 2 CPU cores (12 searches of 5.5 minutes, the yardsticks, the two
cache runs). A finished search (its result file written) is read back, not run again, so the
benchmark can be stopped and continued. Results: OUT/results.json and the tables printed.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from budgetnas.reports.front.frame import trials_frame
from budgetnas.reports.front.sizes import sampled_params, size_bands
from budgetnas.reports.page.run import spent_table
from budgetnas.search.study.runs import open_run
from budgetnas.search.verification.records import Verified, best_verified, stored_results

STRATEGIES = ("old", "new")
YARDSTICKS = ("001", "002")
CACHE_RUNS = ("cache-first", "cache-second")
MIN_FRACTION = 0.3  # the size bands' floor: the default space's smallest target (both alike)


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzipped or not) as a NumPy array."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def mnist_raw(data_dir: Path, stem: str) -> np.ndarray:
    raw = data_dir / "MNIST" / "raw"
    for name in (stem, stem + ".gz"):
        if (raw / name).is_file():
            return read_idx(raw / name)
    raise SystemExit(f"error: {raw / stem} not found (see the data README)")


def make_mnist14(data_dir: Path, path: Path) -> Path:
    """MNIST scaled to 14x14 (mean of each 2x2 block, rounded), train and test, as an .npz."""
    if path.is_file():
        return path

    def half(x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float32).reshape(len(x), 14, 2, 14, 2).mean(axis=(2, 4))
        return np.rint(x).astype(np.uint8)

    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path,
        x=half(mnist_raw(data_dir, "train-images-idx3-ubyte")),
        y=mnist_raw(data_dir, "train-labels-idx1-ubyte").astype(np.int64),
        x_test=half(mnist_raw(data_dir, "t10k-images-idx3-ubyte")),
        y_test=mnist_raw(data_dir, "t10k-labels-idx1-ubyte").astype(np.int64),
    )
    return path


def data_flags(args: argparse.Namespace, dataset: str) -> list[str]:
    if dataset == "mnist":
        return ["--dataset", "mnist", "--data-dir", str(args.data_dir)]
    if dataset != "mnist14at28":
        raise SystemExit(f"error: unknown data set {dataset!r}: mnist or mnist14at28")
    npz = make_mnist14(Path(args.data_dir), Path(args.out) / "data" / "mnist14.npz")
    # shown at 28x28 (bilinear), the seed networks' input size: they are its yardsticks too
    return ["--data", str(npz), "--resize", "28"]


def search_command(args, python: str, dataset: str, seed: int, run: Path) -> list[str]:
    cmd = [python, "-m", "budgetnas.search.cli", "search", "--budget", str(args.budget)]
    cmd += ["--epochs", str(args.epochs), "--budget-time", f"{args.minutes * 60:.0f}s"]
    cmd += ["--seed", str(seed), "--out", str(run), "--device", args.device]
    if args.train_subset:
        cmd += ["--train-subset", str(args.train_subset)]
    if args.val_size:
        cmd += ["--val-size", str(args.val_size)]
    if python != args.old_python:  # the older commit trains in fp32 and has no --precision
        cmd += ["--precision", args.precision]
    return cmd + data_flags(args, dataset)


def run_logged(cmd: list[str], log: Path, env: dict | None = None) -> float:
    """Run ``cmd`` with its output in ``log``; its wall time in seconds. A failure stops the
    benchmark with the log's name."""
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log, "w") as f:
        f.write(" ".join(cmd) + "\n")
        f.flush()
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env).returncode
    wall = time.perf_counter() - start
    if rc:
        raise SystemExit(f"error: exit {rc}: {' '.join(cmd)} (see {log})")
    return wall


def at_target(results: dict[str, Verified], key: str, epochs: int) -> Verified | None:
    """The record of ``key`` at the search's target (its epochs, the most images), with the
    most seeds."""
    mine = [v for v in results.values() if v.key == key and v.runs and v.fidelity is not None]
    mine = [v for v in mine if v.fidelity.epochs == epochs]
    if not mine:
        return None
    top = max(v.fidelity.image_epochs for v in mine)
    return max((v for v in mine if v.fidelity.image_epochs == top), key=lambda v: len(v.runs))


def figures(v: Verified | None, seeds: list[int] | None = None) -> dict | None:
    """Params, seeds and validation/test mean and std of a record (its runs of ``seeds``)."""
    if v is None:
        return None
    runs = [r for r in v.runs if seeds is None or r.seed in seeds]
    if not runs:
        return None

    def spread(xs: list[float]) -> float | None:
        return statistics.stdev(xs) if len(xs) > 1 else None

    vals, tests = [r.val_acc for r in runs], [r.test_acc for r in runs]
    return {
        "key": v.key,
        "params": v.params,
        "seeds": sorted(r.seed for r in runs),
        "val_mean": statistics.fmean(vals),
        "val_std": spread(vals),
        "test_mean": statistics.fmean(tests),
        "test_std": spread(tests),
    }


def measure(run: Path, cap: int) -> dict:
    """The figures of one finished search, read from its study."""
    _, study = open_run(run)
    df = trials_frame(study.get_trials(deepcopy=False))
    bands = size_bands(sampled_params(df, cap, default_cap=cap), cap=cap, min_fraction=MIN_FRACTION)
    spent = spent_table(study).set_index("what")
    results = stored_results(study)
    best = best_verified(results, cap)
    half = best_verified(results, cap // 2)
    return {
        "bands": [[b.label(), b.count] for b in bands],
        "sampled": sum(b.count for b in bands),
        "top_band": bands[-1].count if bands else 0,
        "compute_min": {k: round(float(spent.loc[k, "minutes"]), 2) for k in spent.index},
        "reused": int(spent.loc["in all", "reused"]),
        "best": figures(best),
        "best_half": figures(half),
    }


def yardsticks(run: Path, epochs: int, seeds: list[int]) -> dict:
    """Seed networks 001 and 002 at ``run``'s target, on ``seeds`` only."""
    _, study = open_run(run)
    results = stored_results(study)
    return {z: figures(at_target(results, f"zoo-{z}", epochs), seeds) for z in YARDSTICKS}


def pct(f: dict | None, what: str) -> str:
    if f is None:
        return "-"
    mean, std = f[f"{what}_mean"], f[f"{what}_std"]
    return f"{mean:.2%}" + ("" if std is None else f" ± {std:.2%}")


def print_tables(results: dict, args) -> None:
    print(
        f"\ncap {args.budget:,}, --epochs {args.epochs}, --budget-time {args.minutes:g}m"
        + (f", --train-subset {args.train_subset:,}" if args.train_subset else "")
        + (f", --val-size {args.val_size:,}" if args.val_size else "")
        + f", device {args.device}; verified: mean ± std over each search's verify seeds"
    )
    print(
        "| data | search | seed | wall | rung 0 (top band) | best <= cap: params, val, test "
        "| best <= cap/2: params, val, test | seed 001 val, test | seed 002 val, test | compute "
        "min: sampled / promoted / refs / verify |"
    )
    print("| --- " * 10 + "|")
    for key in sorted(results):
        r = results[key]
        if "best" not in r or key.count("/") != 2:  # unfinished, or a cache run
            continue
        dataset, strategy, seed = key.split("/")

        def net(f: dict | None) -> str:
            return "-" if f is None else f"{f['params']:,}, {pct(f, 'val')}, {pct(f, 'test')}"

        y = r.get("yardsticks", {})
        c = r["compute_min"]
        verify = c.get("verification of searched networks", 0) + c.get(
            "verification of references", 0
        )
        print(
            f"| {dataset} | {strategy} | {seed} | {r['wall_s'] / 60:.1f} min | "
            f"{r['sampled']} ({r['top_band']}, {r['top_band'] / max(1, r['sampled']):.0%}) | "
            f"{net(r['best'])} | {net(r['best_half'])} | "
            f"{pct(y.get('001'), 'val')}, {pct(y.get('001'), 'test')} | "
            f"{pct(y.get('002'), 'val')}, {pct(y.get('002'), 'test')} | "
            f"{c.get('sampled candidates', 0):.1f} / {c.get('promotions', 0):.1f} / "
            f"{c.get('references', 0):.1f} / {verify:.1f} |"
        )
    print("\nmean over search seeds (validation and test: each search's verified mean):")
    print("| data | search | top band | best <= cap val, test | vs seed 001 val, test |")
    print("| --- " * 5 + "|")
    for dataset in args.datasets:
        for strategy in STRATEGIES:
            rows = [
                r
                for k, r in results.items()
                if k.startswith(f"{dataset}/{strategy}/") and "best" in r
            ]
            if not rows:
                continue
            top = sum(r["top_band"] for r in rows) / max(1, sum(r["sampled"] for r in rows))
            best = [r["best"] for r in rows if r["best"]]
            gaps = [
                (r["best"]["val_mean"] - y["val_mean"], r["best"]["test_mean"] - y["test_mean"])
                for r in rows
                if r["best"] and (y := r.get("yardsticks", {}).get("001"))
            ]

            def mean(xs: list[float]) -> str:
                return f"{statistics.fmean(xs):.2%}" if xs else "-"

            print(
                f"| {dataset} | {strategy} | {top:.0%} | "
                f"{mean([b['val_mean'] for b in best])}, {mean([b['test_mean'] for b in best])} | "
                f"{mean([g[0] for g in gaps])}, {mean([g[1] for g in gaps])} |"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--old-python", required=True, help="interpreter of the older checkout")
    ap.add_argument("--new-python", default=sys.executable, help="today's [default: this one]")
    ap.add_argument("--data-dir", required=True, help="holds MNIST/raw")
    ap.add_argument("--out", required=True, help="folder for the runs, logs and results.json")
    ap.add_argument("--budget", type=int, default=10_000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--minutes", type=float, default=5.5, help="--budget-time of each search")
    ap.add_argument("--train-subset", type=int, default=10_000)
    ap.add_argument("--val-size", type=int, default=2_000)
    ap.add_argument("--seeds", default="0,1,2", help="search seeds")
    ap.add_argument(
        "--datasets",
        default="mnist,mnist14at28",
        help="mnist, and mnist14at28: MNIST reduced to 14x14, shown at 28x28",
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--precision",
        default="fp32",
        help="today's searches (and so the yardsticks verified in their runs); fp32, as the "
        "older commit trains, compares the searches alone [default: fp32]",
    )
    ap.add_argument("--no-cache-runs", action="store_true", help="skip the two cache runs")
    ap.add_argument(
        "--cache-tag",
        default="",
        help="names the cache runs cache-first-TAG and cache-second-TAG (their cache: "
        "cache-demo-TAG, emptied before the first), so that they run again beside earlier "
        "ones (another commit) [default: none]",
    )
    args = ap.parse_args()
    args.datasets = args.datasets.split(",")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    seeds = [int(s) for s in args.seeds.split(",")]
    env = {**os.environ, "BUDGETNAS_CACHE": str(out / "cache-yardsticks"), "PYTHONUNBUFFERED": "1"}

    def save() -> None:
        path.write_text(json.dumps(results, indent=2, sort_keys=True))

    for dataset in args.datasets:
        for seed in seeds:
            for strategy in STRATEGIES:
                key = f"{dataset}/{strategy}/seed{seed}"
                run = out / dataset / strategy / f"seed{seed}"
                if "best" not in results.get(key, {}):
                    python = args.old_python if strategy == "old" else args.new_python
                    cmd = search_command(args, python, dataset, seed, run)
                    cmd += ["--no-cache"] if strategy == "new" else []
                    if run.exists():
                        subprocess.run(["rm", "-rf", str(run)], check=True)  # start over whole
                    wall = run_logged(cmd, out / "logs" / f"{dataset}-{strategy}-{seed}.log", env)
                    results[key] = {"wall_s": round(wall, 1), **measure(run, args.budget)}
                    save()
                    print(f"{key}: {wall / 60:.1f} min", flush=True)
            # the yardsticks on the seeds of this search seed's verification, trained by
            # today's code in today's run; the old run verified with the same seeds
            new_run = out / dataset / "new" / f"seed{seed}"
            if "yardsticks" not in results[f"{dataset}/new/seed{seed}"]:
                cmd = [args.new_python, "-m", "budgetnas.search.cli", "verify", str(new_run)]
                cmd += [a for z in YARDSTICKS for a in ("--zoo", z)]
                cmd += ["--seeds", "3", "--device", args.device]
                if args.train_subset:  # the search's target images: the same subset
                    cmd += ["--train-subset", str(args.train_subset)]
                run_logged(cmd, out / "logs" / f"{dataset}-yardsticks-{seed}.log", env)
            for strategy in STRATEGIES:
                r = results[f"{dataset}/{strategy}/seed{seed}"]
                verify_seeds = (r["best"] or {}).get("seeds") or [s for s in range(4) if s != seed]
                r["yardsticks"] = yardsticks(new_run, args.epochs, verify_seeds[:3])
            save()

    if not args.no_cache_runs:
        dataset, seed = args.datasets[0], seeds[0]
        tag = f"-{args.cache_tag}" if args.cache_tag else ""
        names = [n + tag for n in CACHE_RUNS]
        folder = out / f"cache-demo{tag}"
        if names[0] not in results and folder.exists():  # the first run starts it empty
            subprocess.run(["rm", "-rf", str(folder)], check=True)
        cache = {**env, "BUDGETNAS_CACHE": str(folder)}
        for name in names:
            if name in results:
                continue
            run = out / dataset / name
            if run.exists():
                subprocess.run(["rm", "-rf", str(run)], check=True)
            cmd = search_command(args, args.new_python, dataset, seed, run)
            wall = run_logged(cmd, out / "logs" / f"{name}.log", cache)
            results[name] = {"wall_s": round(wall, 1), **measure(run, args.budget)}
            save()
        for name in names:
            r = results[name]
            print(
                f"{name}: {r['wall_s'] / 60:.1f} min, {r['reused']} trainings reused, "
                f"{r['sampled']} candidates sampled; see {out / 'logs' / (name + '.log')}"
            )
    print_tables(results, args)


if __name__ == "__main__":
    main()
