"""A new search's config from the options a user gave, and the options' names and groups.

``new_config`` is what ``budgetnas search`` and ``budgetnas.search.new_config`` build a
``SearchConfig`` with: options not given take the library's defaults (the data's, the
recipe's for the epoch budget, the search's)."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

from budgetnas.search.errors import SearchError
from budgetnas.search.study.config import UNLIMITED, SearchConfig
from budgetnas.search.study.processes import default_workers
from budgetnas.space.spacefile import SHIPPED, space_config
from budgetnas.space.spacefile import read as read_space
from budgetnas.trainers.data import DataConfig
from budgetnas.trainers.datasets import default_data_dir
from budgetnas.trainers.evaluate import resolve_device
from budgetnas.trainers.precision import recipe_settings
from budgetnas.trainers.recipe import AugmentConfig, default_recipe

# How a search's options divide among the parts of its config (the rest are the search's own).
DATA_OPTIONS = (
    "dataset",
    "val_size",
    "split_seed",
    "train_subset",
    "data_dir",
    "download",
    "path",
    "resize",
)


RECIPE_OPTIONS = (
    "epochs",
    "batch_size",
    "lr",
    "optimizer",
    "momentum",
    "weight_decay",
    "label_smoothing",
    "augment",
)


def new_config(*, out: str | Path, caps: tuple[int, ...], **options: Any) -> SearchConfig:
    """A new search's config from the options a user gave (``None``: not given).

    Options not given take the library's defaults: the data's, the recipe's for the epoch
    budget (one epoch has its own), the search's. ``augment`` is a strength (see
    ``AugmentConfig.scaled``); ``seed`` seeds both the sampler and the training runs;
    ``space_file``: a space file, or the name of a shipped one (``default``, ``rich``);
    ``precision``: auto (the device's fastest measured, ``trainers.precision``), fp32 or bf16.
    """
    given = {k: v for k, v in options.items() if v is not None}
    if "workers" not in given:
        given["workers"] = default_workers(given.get("device"))
    if ("budget_time" in given or "budget_epochs" in given) and "trials" not in given:
        given["trials"] = UNLIMITED  # the time budget decides how many candidates
    data = {k: given.pop(k) for k in DATA_OPTIONS if k in given}
    data["data_dir"] = str(Path(data.get("data_dir") or default_data_dir()).resolve())
    if data.get("path") is not None:
        data["path"] = str(Path(data["path"]).resolve())
    recipe = {k: given.pop(k) for k in RECIPE_OPTIONS if k in given}
    if "augment" in recipe:
        recipe["augment"] = AugmentConfig.scaled(float(recipe["augment"]))
    if "seed" in given:
        recipe["seed"] = given["seed"]
    device = resolve_device(given.get("device"))
    recipe.update(recipe_settings(given.pop("precision", "auto"), device))
    space_file = given.pop("space_file", None)
    if "teacher" in given:
        from budgetnas.search.study.teacher import parse_teacher

        given["teacher"] = parse_teacher(given["teacher"])
    unknown = sorted(set(given) - {f.name for f in fields(SearchConfig)})
    if unknown:
        raise TypeError(f"unknown search option(s): {', '.join(unknown)}")
    data_cfg = DataConfig(**data)
    if space_file is not None:
        info = data_cfg.info
        images = {
            "in_channels": info.in_channels,
            "input_size": info.image_size,
            "num_classes": info.num_classes,
            "norm": (info.mean, info.std),
        }
        name = (
            f"the {space_file} space" if str(space_file) in SHIPPED else f"space file {space_file}"
        )
        given["space"] = space_config(read_space(space_file), images, name=name)
    return SearchConfig(
        out=str(Path(out).resolve()),
        caps=tuple(caps),
        data=data_cfg,
        recipe=default_recipe(**recipe),
        **given,
    )


def config_from_options(given: dict[str, Any], *, resume: Path | str | None) -> SearchConfig:
    """The config of ``budgetnas search`` from the options given (``None``: not given) as the
    command names them: a resumed run's stored config with the settings a resume may change,
    or a new search's (``--budget`` and ``--out`` required; ``--budget 10k,25k`` a ladder,
    ``--budget-time 30m``, ``--max-macs 2M`` as users write them)."""
    from budgetnas.search.units import parse_count, parse_duration, parse_ladder

    given = {k: v for k, v in given.items() if v is not None}
    renames = {"data": "path", "space": "space_file"}  # the command's names, the config's
    given = {renames.get(k, k): v for k, v in given.items()}
    if "budget_time" in given:
        given["budget_time"] = parse_duration(given["budget_time"])
    if "concurrent" in given:  # auto: None, kept as given (a resume may go back to auto)
        from budgetnas.search.study.concurrency import parse_concurrent

        given["concurrent"] = parse_concurrent(given["concurrent"])
    if resume is not None:
        from budgetnas.search.study.runs import read_config

        return read_config(resume).resumed(**given)
    budget, out = given.pop("budget", None), given.pop("out", None)
    if budget is None:
        raise SearchError("--budget is required (for example --budget 10k)")
    if out is None:
        raise SearchError("--out is required: the run folder to create")
    if "max_macs" in given:
        given["max_macs"] = parse_count(given["max_macs"], what="--max-macs", unit="MAC")
    return new_config(out=out, caps=parse_ladder(budget), **given)
