"""A recipe for networks this small: training settings measured against SGD (the default before
AdamW, which these rows made the default), on the validation split (the test set is not read).

    python benchmarks/recipe.py --data-dir .data --out runs/recipe

Each setting (rows) trains each network with 3 seeds (1, 2, 3) on each data set at each
recipe:

- data: MNIST, and MNIST reduced to 14x14 and shown at 28x28 (search_power.py's mnist14at28),
  both carved as a search carves them (``DataConfig``: 55,000 training, 5,000 validation);
- recipes: ``default_recipe(3)`` and ``default_recipe(1)`` with SGD (the defaults of ``--epochs 3``
  and ``--epochs 1`` with ``--optimizer sgd``), in the precision a search takes on this CPU
  (``--precision auto``);
- networks: seeds 001 and 002 (``space.zoo``) and two searched networks, their specs in
  ``benchmarks/recipe_nets/`` (``budgetnas search --budget 10k --epochs 3 --budget-time 20m``:
  its best verified network, trial 6, 5,319 parameters; ``--budget 25k --epochs 1
  --budget-time 20m``: its race answer, trial 28, 23,356 parameters), each with the data set's
  normalisation; the batch-size rows on one network per recipe (``ONE_NETWORK``), to fit the
  grid in hours on a 2-core CPU (``--grid matched``: a smaller grid, ``MATCHED``);
- settings: ``SETTINGS`` (baseline = the default recipe); ``--settings a+b`` combines two.

``ema``: EMA changes which weights are returned, not the training (tests/trainers/
test_recipe_settings.py checks that, to the bit), so it is read from the baseline's own
training: the baseline trains with EMA on and reports its live network, the EMA row the
average. ``distill``: the teacher (``search.teacher.TEACHER``, 102,826 parameters, the
recipe for 5 epochs) is trained first, once per data set and recipe (seed 0, through a
results cache in OUT/cache), and its soft targets (un-augmented training images) are kept in
OUT/teachers/. ``adamw``: its learning rate, weight decay and beta1 from a pilot on seed 0
(``--seeds 0 --networks 001,002 --grid matched --datasets mnist --settings
baseline,adamw,adamw-lr0.003,adamw-lr0.01,adamw-lr0.01-b0.5,adamw-lr0.01-b0.9,
adamw-lr0.01-wd0.05,adamw-lr0.02``).

Every (setting, data, recipe, network, seed) is a task with its own result file in
OUT/<setting>.<data>.e<epochs>.<network>/seed<seed>/result.json, skipped when present (stop
and run again to continue), run --jobs at once, one thread each (``common.run_tasks``), seed
by seed. Prints a markdown table: per setting and (data, recipe, network), the validation
accuracy mean ± std over the seeds and the mean difference to the baseline paired by seed;
then per (data, recipe) the mean paired difference over networks and seeds ± its standard
error, and whether the setting gains (a positive mean difference) on both data sets at both
recipes. ``--table`` prints the tables of what has finished.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import common
from search_power import make_mnist14

HERE = Path(__file__).resolve().parent
NETS_DIR = HERE / "recipe_nets"
NETWORKS = ("001", "002", "searched-10k-e3", "searched-25k-e1")
DATASETS = ("mnist", "mnist14at28")
RECIPES = (3, 1)
EMA_DECAY = 0.99


# key -> (row label, the recipe's overrides: a dict, or a function of the base recipe)
def _adamw(lr: float, weight_decay: float, beta1: float) -> tuple[str, dict[str, Any]]:
    """An AdamW row: its label and its overrides."""
    label = f"AdamW lr {lr:g} wd {weight_decay:g} beta1 {beta1:g}"
    return label, {"optimizer": "adamw", "lr": lr, "weight_decay": weight_decay, "beta1": beta1}


SETTINGS: dict[str, tuple[str, Any]] = {
    "baseline": ("baseline (SGD, the default recipe before AdamW)", {}),
    "ema": (f"EMA {EMA_DECAY:g}", {"ema": EMA_DECAY}),
    "smooth": ("label smoothing 0.1", {"label_smoothing": 0.1}),
    # AdamW: lr, weight decay and beta1 chosen by a pilot on seed 0 (not a benchmark seed),
    # MNIST, seed 001 at 3 epochs and seed 002 at 1 epoch (docs/benchmarks.md); the others
    # are the pilot's
    "adamw": _adamw(0.03, 0.01, 0.7),
    "adamw-lr0.01": _adamw(0.01, 0.01, 0.7),
    "adamw-lr0.01-b0.5": _adamw(0.01, 0.01, 0.5),
    "adamw-lr0.01-b0.9": _adamw(0.01, 0.01, 0.9),
    "adamw-lr0.003": _adamw(0.003, 0.01, 0.7),
    "adamw-lr0.02": _adamw(0.02, 0.01, 0.7),
    "adamw-lr0.01-wd0.05": _adamw(0.01, 0.05, 0.7),
    "batch-half": ("batch size halved", lambda r: {"batch_size": r.batch_size // 2}),
    "batch-double": ("batch size doubled", lambda r: {"batch_size": r.batch_size * 2}),
    "distill": ("distillation 0.5, T 4", {"distill": 0.5, "temperature": 4.0}),
}
DEFAULT_SETTINGS = "baseline,ema,smooth,adamw,batch-half,batch-double,distill"
# the batch-size rows are trained on one network per recipe (the grid cut to fit hours on a
# 2-core CPU): seed 001 at 3 epochs, seed 002 ("one-epoch target") at 1 epoch
ONE_NETWORK = {"batch-half": {3: "001", 1: "002"}, "batch-double": {3: "001", 1: "002"}}
# --grid matched, a smaller grid: each recipe on the two networks made for it (seed 001 and
# the 3-epoch search's answer at 3 epochs; seed 002 and the one-epoch search's at 1 epoch)
MATCHED = {3: ("001", "searched-10k-e3"), 1: ("002", "searched-25k-e1")}


def label(setting: str) -> str:
    return " + ".join(SETTINGS[k][0] for k in setting.split("+"))


def overrides(setting: str, base) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in setting.split("+"):
        if key == "baseline":
            continue
        extra = SETTINGS[key][1]
        out.update(extra(base) if callable(extra) else extra)
    return out


def network_spec(name: str, info):
    """The network ``name`` for the images of ``info`` (their normalisation)."""
    from budgetnas.space.spec import ArchSpec
    from budgetnas.space.zoo import ZOO

    spec = (
        ZOO[name].spec
        if name in ZOO
        else ArchSpec.from_json((NETS_DIR / f"{name}.json").read_text())
    )
    return replace(spec, norm=(info.mean, info.std))


def load_data(args: argparse.Namespace, dataset: str):
    """``dataset`` carved as a search carves it (``DataConfig``), on the CPU."""
    from budgetnas.trainers.data import DataConfig

    subset = args.train_subset
    if dataset == "mnist":
        data_dir = str(Path(args.data_dir).resolve())
        cfg = DataConfig(dataset="mnist", data_dir=data_dir, train_subset=subset)
    else:
        npz = make_mnist14(Path(args.data_dir), Path(args.out) / "data" / "mnist14.npz")
        cfg = DataConfig(path=str(npz.resolve()), resize=28, train_subset=subset)
    return cfg.load("cpu")


def base_recipe(epochs: int, seed: int):
    """``default_recipe(epochs)`` with SGD (the default before AdamW: the baseline every
    row is paired with), in the precision ``--precision auto`` takes on this CPU."""
    import torch

    from budgetnas.trainers.precision import recipe_settings
    from budgetnas.trainers.recipe import default_recipe

    settings = recipe_settings("auto", torch.device("cpu"))
    return default_recipe(epochs, seed=seed, optimizer="sgd", **settings)


def teacher_file(args: argparse.Namespace, dataset: str, epochs: int) -> Path:
    return Path(args.out) / "teachers" / f"{dataset}-e{epochs}.pt"


def run_teacher(args: argparse.Namespace, dataset: str, epochs: int) -> dict:
    """The teacher of (data set, recipe), trained once through the cache; its soft targets
    kept for the distillation tasks."""
    import torch

    from budgetnas.search.cache.store import ResultCache
    from budgetnas.search.study.teacher import TEACHER_EPOCHS, auto_teacher
    from budgetnas.trainers.distill import SoftTargets, soft_targets

    data = load_data(args, dataset)
    start = time.perf_counter()
    cache = ResultCache(Path(args.out) / "cache")
    teacher = auto_teacher(data, base_recipe(epochs, 0), cache=cache, device="cpu")
    soft, val = SoftTargets.of(soft_targets(teacher.model, data.train)), teacher.val_acc
    path = teacher_file(args, dataset, epochs)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"logits": soft.logits, "id": soft.id}, path)
    return {
        "val": val,
        "id": soft.id,
        "epochs": max(epochs, TEACHER_EPOCHS),
        "seconds": round(time.perf_counter() - start, 1),
    }


def run_one(args: argparse.Namespace, kind: str, seed: int) -> dict:
    """One task: ``kind`` = setting.data.e<epochs>.network, at training seed ``seed``."""
    import torch

    import budgetnas.trainers.train as trainer
    from budgetnas.trainers.distill import SoftTargets
    from budgetnas.trainers.ema import WeightAverage
    from budgetnas.trainers.evaluate import evaluate

    setting, dataset, recipe, network = kind.rsplit(".", 3)  # a setting may hold dots
    epochs = int(recipe.removeprefix("e"))
    if setting == "teacher":
        return run_teacher(args, dataset, epochs)
    data = load_data(args, dataset)
    spec = network_spec(network, data.info)
    base = base_recipe(epochs, seed)
    changes = overrides(setting, base)
    if changes.get("distill"):  # the teacher of this data set and recipe
        held = torch.load(teacher_file(args, dataset, epochs), weights_only=True)
        data = replace(data, soft=SoftTargets(held["logits"], held["id"]))
        changes["teacher"] = held["id"]
    cfg = replace(base, **changes)
    live: list[torch.nn.Module] = []
    if setting == "baseline":  # trained with EMA on: the live network is the baseline
        cfg = replace(cfg, ema=EMA_DECAY)

        class KeepLive(WeightAverage):
            def __init__(self, model, decay):
                super().__init__(model, decay)
                live.append(model)

        trainer.WeightAverage = KeepLive
    result = trainer.train(spec, data, cfg)
    out = {
        "kind": kind,
        "seed": seed,
        "recipe": cfg.to_dict(),
        "val": result.val_acc,
        "val_curve": result.val_curve,
        "loss_curve": result.loss_curve,
        "seconds": round(result.train_time_s, 1),
    }
    if live:
        out["val"] = evaluate(live[0], data.val)
        out["ema_val"] = result.val_acc
    return out


def networks_of(args: argparse.Namespace, epochs: int, setting: str = "baseline") -> list[str]:
    """The networks ``setting`` is trained on at ``epochs``: ``--networks`` (with ``--grid
    matched``, those of ``MATCHED`` among them), one of them for the ``ONE_NETWORK`` rows."""
    nets = args.networks.split(",")
    if args.grid == "matched":
        nets = [n for n in nets if n in MATCHED.get(epochs, ())]
    only = ONE_NETWORK.get(setting, {}).get(epochs)
    return nets if only is None or len(nets) == 1 else [n for n in nets if n == only]


def tasks_of(args: argparse.Namespace) -> list[tuple[str, int]]:
    """Every (kind, seed) of the grid, seed by seed (each seed's whole grid before the
    next, so that a stopped run has whole seeds), the settings of one cell side by side."""
    settings = [s for s in args.settings.split(",") if s != "ema"]
    out = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for dataset in args.datasets.split(","):
            for epochs in [int(e) for e in args.recipes.split(",")]:
                for network in networks_of(args, epochs):
                    for setting in settings:
                        if network in networks_of(args, epochs, setting.split("+")[0]):
                            out.append((f"{setting}.{dataset}.e{epochs}.{network}", seed))
    return out


def result_of(out: Path, setting: str, cell: tuple[str, int, str], seed: int) -> float | None:
    dataset, epochs, network = cell
    name = "baseline" if setting == "ema" else setting
    path = out / f"{name}.{dataset}.e{epochs}.{network}" / f"seed{seed}" / common.RESULT
    if not path.is_file():
        return None
    r = json.loads(path.read_text())
    return r["ema_val"] if setting == "ema" else r["val"]


def table(args: argparse.Namespace) -> str:
    """The markdown tables of every finished task."""
    out = Path(args.out)
    seeds = [int(s) for s in args.seeds.split(",")]
    sets, recipes = args.datasets.split(","), [int(e) for e in args.recipes.split(",")]
    groups = [(d, e) for d in sets for e in recipes]
    cells = [(d, e, n) for d, e in groups for n in networks_of(args, e)]
    settings = args.settings.split(",")

    def values(setting: str, cell) -> dict[int, float]:
        got = {s: result_of(out, setting, cell, s) for s in seeds}
        return {s: v for s, v in got.items() if v is not None}

    head = ["setting", *(f"{d} {e} ep {n}" for d, e, n in cells)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for setting in settings:
        row = [label(setting)]
        for cell in cells:
            mine, base = values(setting, cell), values("baseline", cell)
            row.append(cell_text(mine, base, setting == "baseline"))
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        "Mean paired difference to the baseline over networks and seeds (± its "
        "standard error), per data set and recipe:",
        "",
    ]
    head = [
        "setting",
        *(f"{d} {e} ep" for d, e in groups),
        "gains on both data sets at both recipes",
    ]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for setting in settings:
        if setting == "baseline":
            continue
        row, gains = [label(setting)], []
        for d, e in groups:
            diffs = []
            for n in networks_of(args, e):
                mine, base = values(setting, (d, e, n)), values("baseline", (d, e, n))
                diffs += [mine[s] - base[s] for s in mine if s in base]
            if not diffs:
                row.append("-")
                gains.append(None)
                continue
            mean = statistics.fmean(diffs)
            se = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else 0.0
            row.append(f"{100 * mean:+.2f} ± {100 * se:.2f} ({len(diffs)})")
            gains.append(mean > 0)
        # "yes" needs a gain at every (data set, recipe) of the design; one loss is a "no"
        complete = {(d, e) for d, e in groups} >= {(d, e) for d in DATASETS for e in RECIPES}
        if False in gains:
            verdict = "no"
        else:
            verdict = "yes" if complete and None not in gains else "not all measured"
        lines.append("| " + " | ".join([*row, verdict]) + " |")
    return "\n".join(lines)


def cell_text(mine: dict[int, float], base: dict[int, float], is_base: bool) -> str:
    if not mine:
        return "-"
    vals = list(mine.values())
    std = statistics.stdev(vals) if len(vals) > 1 else 0.0
    text = f"{100 * statistics.fmean(vals):.2f} ± {100 * std:.2f}"
    paired = [mine[s] - base[s] for s in mine if s in base]
    if not is_base and paired:
        text += f" ({100 * statistics.fmean(paired):+.2f})"
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data-dir", required=True, help="holds MNIST/raw")
    ap.add_argument("--out", default="runs/recipe")
    ap.add_argument("--seeds", default="1,2,3", help="training seeds")
    ap.add_argument("--networks", default=",".join(NETWORKS))
    ap.add_argument(
        "--grid",
        choices=("matched", "full"),
        default="full",
        help="full: every network at every recipe; matched: each recipe on the two networks "
        "made for it (MATCHED); the batch-size rows on one network per recipe in both",
    )
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--recipes", default=",".join(map(str, RECIPES)), help="epochs")
    ap.add_argument("--settings", default=DEFAULT_SETTINGS, help=f"of {', '.join(SETTINGS)}")
    ap.add_argument("--table", action="store_true", help="print the table of what finished")
    ap.add_argument("--train-subset", type=int, default=None, help="fewer images (smoke runs)")
    common.add_task_options(ap)
    args = ap.parse_args()
    unknown = [k for s in args.settings.split(",") for k in s.split("+") if k not in SETTINGS]
    if unknown:
        raise SystemExit(
            f"error: unknown setting {unknown[0]!r}; choose from {', '.join(SETTINGS)}"
        )
    out = Path(args.out)
    if args.one:
        kind, seed = args.one.rsplit(":", 1)
        result = run_one(args, kind, int(seed))
        folder = out / kind / f"seed{seed}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / common.RESULT).write_text(json.dumps(result, indent=2))
        return
    if args.table:
        print(table(args))
        return
    cores = [int(c) for c in args.cores.split(",")] if args.cores else None
    script = str(Path(__file__).resolve())
    start = time.time()
    if "mnist14at28" in args.datasets.split(","):  # made once, before the tasks read it
        make_mnist14(Path(args.data_dir), out / "data" / "mnist14.npz")
    if any("distill" in s for s in args.settings.split(",")):
        teachers = [
            (f"teacher.{d}.e{e}.-", 0)
            for d in args.datasets.split(",")
            for e in [int(e) for e in args.recipes.split(",")]
        ]
        common.run_tasks(
            script, teachers, out=out, result=common.RESULT, jobs=args.jobs, cores=cores
        )
        for kind, seed in teachers:
            path = out / kind / f"seed{seed}" / common.RESULT
            if not path.is_file():
                raise SystemExit(f"error: teacher {kind} failed; see {out / 'logs'}")
            print(f"{kind}: {json.loads(path.read_text())}", flush=True)
    tasks = tasks_of(args)
    common.run_tasks(script, tasks, out=out, result=common.RESULT, jobs=args.jobs, cores=cores)
    done = sum((out / k / f"seed{s}" / common.RESULT).is_file() for k, s in tasks)
    print(
        f"\n{done} of {len(tasks)} tasks finished ({(time.time() - start) / 3600:.2f} h this "
        f"run; {os.cpu_count()} cores, {args.jobs} at once, one thread each; "
        f"python {sys.version.split()[0]})\n"
    )
    print(table(args))


if __name__ == "__main__":
    main()
