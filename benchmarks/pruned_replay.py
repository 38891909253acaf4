"""What the pruner's cuts cost: trials of a run that were pruned, trained to the end.

    python benchmarks/pruned_replay.py runs/mnist10k-45m 35,74

Each trial named is trained again with its own spec, recipe (its rung's epochs) and seed on
its rung's images, as the search would have trained it without the cut, and its validation
curve is printed beside the curve the search stopped at. One thread per process (run one
process per trial to use several cores).
"""

from __future__ import annotations

import sys
from dataclasses import replace

import torch

from budgetnas.search.schedule.trials import rung_of
from budgetnas.search.study.runs import open_run, trial_spec
from budgetnas.trainers.recipe import TrainConfig
from budgetnas.trainers.train import train


def main(run: str, numbers: str) -> None:
    torch.set_num_threads(1)
    cfg, study = open_run(run)
    data = cfg.data.load(torch.device("cpu"))
    for n in (int(x) for x in numbers.split(",")):
        t = study.trials[n]
        rung = cfg.schedule.rungs[rung_of(t)]
        recipe = replace(TrainConfig.from_dict(t.user_attrs["recipe"]), epochs=rung.epochs)
        result = train(trial_spec(t), data.first(rung.images), recipe)
        print(
            f"trial {n} ({t.user_attrs['params']:,} params, rung {rung.index}, "
            f"{rung.label()}): cut at {t.user_attrs.get('val_curve')} -> trained to the end "
            f"{[round(a, 4) for a in result.val_curve]} ({result.train_time_s:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
