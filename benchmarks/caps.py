"""How often the sampler proposes a network it cannot fit under the MAC and activation caps.

    python benchmarks/caps.py --budget 10k --samples 300
    python benchmarks/caps.py --budget 5k,10k,25k --space rich --no-extra-caps

Draws structures with Optuna's random sampler (seed 0), as a search's start-up trials do, and
counts the ones rejected before training, per cap, with the median size of those that fit.
Counting only: nothing is trained.
"""

from __future__ import annotations

import argparse
import collections
import statistics

import optuna

from budgetnas.search.units import parse_count
from budgetnas.space.count import analyze
from budgetnas.space.memory import activation_memory
from budgetnas.space.sample import Rejected, sample_spec
from budgetnas.space.spacefile import read, space_config

SETTINGS = [  # (MACs cap, activation cap in KB at int8)
    (None, None),
    (2_000_000, 16),
    (1_000_000, 8),
    (500_000, 6),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--budget", default="10k", help="a cap, or several: 5k,10k,25k")
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--space", default="default", help="a space file, or default / rich")
    ap.add_argument(
        "--no-extra-caps", action="store_true", help="the parameter cap alone (no MAC or memory)"
    )
    args = ap.parse_args()
    cfg = space_config(read(args.space), {}, name=args.space)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    settings = SETTINGS[:1] if args.no_extra_caps else SETTINGS
    print(f"space {args.space}, {args.samples} random structures per row")
    print(
        "| parameter cap | MACs cap | activation cap (int8) | rejected | by cap | median params "
        "| median MACs | median peak activation (int8) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for budget in (parse_count(b) for b in args.budget.split(",")):
        for macs, kb in settings:
            study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
            rejected: collections.Counter[str] = collections.Counter()
            fit = []
            for _ in range(args.samples):
                trial = study.ask()
                try:
                    activation = None if kb is None else kb * 1024
                    spec = sample_spec(
                        trial, budget=budget, cfg=cfg, macs=macs, activation=activation
                    )
                    fit.append(spec)
                except Rejected as rej:
                    rejected[rej.cap] += 1
                study.tell(trial, 0.0)
            n = sum(rejected.values())
            print(
                f"| {budget:,} | {'-' if macs is None else f'{macs:,}'} | "
                f"{'-' if kb is None else f'{kb} KB'} | {n} ({n / args.samples:.0%}) | "
                f"{', '.join(f'{k} {v}' for k, v in sorted(rejected.items())) or '-'} | "
                f"{statistics.median(analyze(s).params for s in fit):,.0f} | "
                f"{statistics.median(analyze(s).macs for s in fit):,.0f} | "
                f"{statistics.median(activation_memory(s).peak for s in fit) / 1024:,.1f} KB |"
            )


if __name__ == "__main__":
    main()
