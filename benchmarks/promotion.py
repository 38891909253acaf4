"""Promotion across fidelities against single-fidelity search, at equal compute, judged at the
target fidelity.

    python benchmarks/promotion.py --data-dir .data --out runs/promotion --budget 10k \\
        --epochs 2 --train-subset 10000 --compute 40 --seeds 0,1,2,3,4,5 --jobs 2

Each strategy searches under the same cap with the same compute (``--compute`` trainings at
the target fidelity, ``--epochs`` on ``--train-subset`` images, counted in image-epochs:
``--budget-epochs``), the same data, recipe and search seeds, no reference networks:

- ``promotion``: ``--rungs 3 --eta 3`` (candidates at the cheapest rung, the best of each size
  band promoted to the target);
- ``single``: ``--rungs 1``, every candidate at the target (the search before rungs);
- ``lowest+verify``: every candidate at the lowest rung of ``promotion``, then its top
  ``--top`` networks by validation trained at the target with one seed (that verification is
  part of its compute);
- ``random``: random sampling, no pruning, at the target.

Then every strategy's answer is measured again the same way: from its front at the target
(for ``lowest+verify``: the verified networks), its best network under the cap, its best under
half the cap and up to 3 more members spread over the sizes between, each trained at the target
with 2 new seeds (1001, 1002) the searches never used. Printed per seed and as mean ± standard
error over seeds: the hypervolume of those re-measured points (parameters / cap minimised,
mean validation accuracy maximised, from (1.0, --hv-ref)), the re-measured best under the cap
and under half of it, image-epochs and wall time used, candidates sampled; for promotion, the
rank correlation (Spearman) of validation accuracy between consecutive rungs over the promoted
candidates. Only validation accuracy is read: the test split is not loaded. Each (strategy,
seed) runs in its own process pinned to one core (``--jobs`` at once); finished ones are read
back from ``--out``, so the benchmark can be stopped and continued.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from dataclasses import replace
from pathlib import Path

from common import add_task_options, mean_se, run_all

STRATEGIES = ("promotion", "single", "lowest+verify", "random")
REMEASURE_SEEDS = (1001, 1002)


def _config(args, strategy: str, seed: int, out: Path):
    from budgetnas.search.schedule.rungs import plan_rungs
    from budgetnas.search.study.options import new_config

    common = dict(
        out=out,
        caps=(args.budget,),
        data_dir=args.data_dir,
        device="cpu",
        seed=seed,
        references="none",
        verify_seeds=0,
        val_size=args.val_size,
        precision="fp32",  # as the documented runs
    )
    if strategy == "lowest+verify":
        low = plan_rungs(epochs=args.epochs, images=args.train_subset, rungs=3, eta=3)[0]
        target = args.epochs * args.train_subset
        compute = (args.compute - args.top) * target / low.image_epochs
        return new_config(
            epochs=low.epochs, train_subset=low.images, budget_epochs=compute, rungs=1, **common
        )
    extra = {
        "promotion": dict(rungs=3, eta=3),
        "single": dict(rungs=1),
        "random": dict(rungs=1, sampler="random", pruner="none"),
    }[strategy]
    return new_config(
        epochs=args.epochs,
        train_subset=args.train_subset,
        budget_epochs=args.compute,
        **extra,
        **common,
    )


def _spearman(pairs: list[tuple[float, float]]) -> float | None:
    if len(pairs) < 3:
        return None

    def ranks(values):
        order = sorted(range(len(values)), key=lambda i: values[i])
        r = [0.0] * len(values)
        for rank, i in enumerate(order):
            r[i] = float(rank)
        return r

    a, b = ranks([p[0] for p in pairs]), ranks([p[1] for p in pairs])
    ma, mb = statistics.fmean(a), statistics.fmean(b)
    cov = sum((x - ma) * (y - mb) for x, y in zip(a, b, strict=True))
    var = math.sqrt(sum((x - ma) ** 2 for x in a) * sum((y - mb) ** 2 for y in b))
    return cov / var if var else None


def run_one(args, strategy: str, seed: int) -> dict:
    """One search and the re-measurement of its answer; returns the figures."""
    import pandas as pd

    from budgetnas.reports.front.frame import trials_frame
    from budgetnas.reports.front.pareto import hypervolume, pareto_front
    from budgetnas.search.pipeline import run_search
    from budgetnas.search.schedule.budgets import trained_image_epochs
    from budgetnas.search.schedule.trials import rung_of
    from budgetnas.search.study.runs import open_run, trial_spec
    from budgetnas.search.verification.records import stored_results
    from budgetnas.search.verification.retrain import verify_run
    from budgetnas.search.verification.standing import front_to_verify
    from budgetnas.trainers.data import load_train_val
    from budgetnas.trainers.recipe import default_recipe
    from budgetnas.trainers.train import train

    out = Path(args.out) / strategy / f"seed{seed}"
    cfg = _config(args, strategy, seed, out)
    start = time.perf_counter()
    if not (out / "config.json").exists():
        run_search(cfg, quiet=True)
    _, study = open_run(out)
    trials = study.get_trials(deepcopy=False)
    spent = trained_image_epochs(trials)
    df = trials_frame(trials)
    if strategy == "lowest+verify":
        verify_run(
            out,
            top=args.top,
            seeds=1,
            device="cpu",
            epochs=args.epochs,
            train_subset=args.train_subset,
        )
        _, study = open_run(out)
        records = [v for v in stored_results(study).values() if v.searched]
        spent += sum(len(v.runs) * v.fidelity.image_epochs for v in records)
        answer = pd.DataFrame(
            {
                "number": [int(v.key.removeprefix("trial-")) for v in records],
                "state": "complete",
                "params": [v.params for v in records],
                "val_acc": [v.val_mean for v in records],
            }
        )
        front = pareto_front(answer, cap=args.budget)
    else:
        front = pareto_front(df, cap=args.budget)
    wall = time.perf_counter() - start

    # the answer measured again at the target: best under the cap, under half, and between
    half = front[front["params"] <= args.budget // 2]
    picks = [int(front.sort_values("val_acc").iloc[-1]["number"])] if len(front) else []
    if len(half):
        picks.append(int(half.sort_values("val_acc").iloc[-1]["number"]))
    for n in front_to_verify(front, 5):
        if n not in picks and len(picks) < 5:
            picks.append(n)
    data = load_train_val(
        "mnist",
        data_dir=args.data_dir,
        val_size=args.val_size,
        train_subset=args.train_subset,
    )
    recipe = default_recipe(args.epochs, optimizer="sgd")  # as measured (docs/benchmarks.md)
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    points = []
    for n in picks:
        spec = trial_spec(by_number[n])
        accs = [train(spec, data, replace(recipe, seed=s)).val_acc for s in REMEASURE_SEEDS]
        points.append({"number": n, "params": spec_params(spec), "val": statistics.fmean(accs)})
    remeasured = pd.DataFrame(
        {
            "number": [p["number"] for p in points],
            "state": "complete",
            "params": [p["params"] for p in points],
            "val_acc": [p["val"] for p in points],
        }
    )

    def best(limit: int) -> float | None:
        under = remeasured[remeasured["params"] <= limit]["val_acc"]
        return float(under.max()) if len(under) else None

    correlations = {}
    if strategy == "promotion":
        for t in trials:
            if rung_of(t) > 0 and t.state.name == "COMPLETE" and t.values:
                source = by_number[t.user_attrs["promoted_from"]]
                if source.values:
                    key = f"{rung_of(source)}->{rung_of(t)}"
                    correlations.setdefault(key, []).append((source.values[0], t.values[0]))
    return {
        "strategy": strategy,
        "seed": seed,
        "hypervolume": hypervolume(
            pareto_front(remeasured, cap=args.budget), cap=args.budget, ref_acc=args.hv_ref
        ),
        "best": best(args.budget),
        "best_half": best(args.budget // 2),
        "image_epochs": spent,
        "compute": spent / (args.epochs * args.train_subset),
        "wall_s": wall,
        "sampled": int(((df["rung"] == 0) & df["reference"].isna()).sum()),
        "points": points,
        "spearman": {k: _spearman(v) for k, v in correlations.items()},
    }


def spec_params(spec) -> int:
    from budgetnas.space.count import count_params

    return count_params(spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--out", default="runs/promotion")
    ap.add_argument("--budget", type=int, default=10_000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--train-subset", type=int, default=10_000)
    ap.add_argument("--val-size", type=int, default=5000)
    ap.add_argument("--compute", type=float, default=40, help="trainings at the target")
    ap.add_argument("--top", type=int, default=5, help="lowest+verify: networks verified")
    ap.add_argument("--seeds", default="0,1,2,3,4,5")
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--hv-ref", type=float, default=0.90)
    add_task_options(ap)
    args = ap.parse_args()
    strategies = args.strategies.split(",")
    results = run_all(__file__, args, strategies, run_one)
    if results is None:  # a child process: its task is done
        return
    print(
        f"\ncap {args.budget:,}, target {args.epochs} ep x {args.train_subset:,} img, compute "
        f"{args.compute:g} trainings at the target, seeds {args.seeds}; answers re-measured "
        f"with seeds {REMEASURE_SEEDS} at the target; hypervolume from (1.0, {args.hv_ref})"
    )
    print(
        "\n| strategy | seed | hypervolume | best <= cap | best <= cap/2 | compute used | wall s |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        half = f"{r['best_half']:.2%}" if r["best_half"] is not None else "-"
        print(
            f"| {r['strategy']} | {r['seed']} | {r['hypervolume']:.4f} | {r['best']:.2%} | "
            f"{half} | {r['compute']:.1f} | {r['wall_s']:.0f} |"
        )
    print(
        "\n| strategy | hypervolume (mean ± s.e.) | best <= cap | best <= cap/2 | "
        "compute used | wall s | candidates sampled | seeds |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for strategy in strategies:
        rs = [r for r in results if r["strategy"] == strategy]
        if not rs:
            continue
        print(
            f"| {strategy} | {mean_se([r['hypervolume'] for r in rs])} | "
            f"{mean_se([r['best'] for r in rs])} | {mean_se([r['best_half'] for r in rs])} | "
            f"{statistics.fmean(r['compute'] for r in rs):.1f} | "
            f"{statistics.fmean(r['wall_s'] for r in rs):.0f} | "
            f"{statistics.fmean(r['sampled'] for r in rs):.0f} | {len(rs)} |"
        )
    promo = [r for r in results if r["strategy"] == "promotion"]
    if promo:
        keys = sorted({k for r in promo for k in r["spearman"]})
        for k in keys:
            vals = [r["spearman"].get(k) for r in promo]
            print(f"promotion: Spearman rank correlation of val acc, rung {k}: {mean_se(vals)}")


if __name__ == "__main__":
    main()
