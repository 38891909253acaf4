"""What the search benchmarks share: one search at the reduced fidelity their flags give."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from budgetnas.search.config import SearchConfig, new_config


def reduced_search(args: argparse.Namespace, out: Path, **settings: Any) -> SearchConfig:
    """The config of one benchmark search: --budget, --trials, --epochs, --train-subset,
    --data-dir and --device from the command line, the rest from ``settings``."""
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
