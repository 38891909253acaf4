"""A search's configuration: the data, the recipe and the space it is made of, plus the
search's own settings; its fingerprint; and what may change when a run is resumed.

``SearchConfig`` is composed, not flat: ``data`` (``trainers.data.DataConfig``), ``recipe``
(``trainers.recipe.TrainConfig``) and ``space`` (``space.choices.SpaceConfig``) are each defined
and validated once, where they belong. The run folder keeps the whole config as
``config.json``; the study keeps the same config and its ``fingerprint()``: everything that
defines a trial's result. Nothing joins or resumes a study whose fingerprint differs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from budgetnas.search.errors import SearchError
from budgetnas.search.schedule.aims import aims_under
from budgetnas.search.schedule.promotion import Schedule
from budgetnas.search.schedule.rungs import MIN_RUNG_STEPS, Rung, auto_rungs, plan_rungs
from budgetnas.search.study.settings import check_fits_space, check_settings
from budgetnas.search.study.storage import journal_url
from budgetnas.space.choices import SpaceConfig
from budgetnas.space.count import count_params
from budgetnas.space.sample import Limits
from budgetnas.space.spec import ArchSpec
from budgetnas.space.zoo import ZOO
from budgetnas.trainers.data import DataConfig
from budgetnas.trainers.recipe import AugmentConfig, TrainConfig, default_recipe

CONFIG_FILE = "config.json"
STUDY_FILE = "study.db"
JOURNAL_FILE = "study.journal"
# 2: momentum constant under OneCycle (it cycled 0.85-0.95 before); sampler, pruner and
# references in the fingerprint
FINGERPRINT_VERSION = 2
UNLIMITED = 1_000_000  # --trials when a --budget-time decides

# Settings a resumed run may change: they decide how much work is done and where, never what
# a trial's result is (the data digest guards a moved data folder).
RESUMABLE = (
    "trials",
    "timeout",
    "budget_time",
    "budget_epochs",
    "device",
    "workers",
    "concurrent",
    "data_dir",
    "path",
    "verify_seeds",
    "race_seeds",
    "fuse_seeds",
)


def flag(name: str) -> str:
    """``train_subset`` -> ``--train-subset`` (the command-line option of a setting)."""
    names = {"study_name": "--study", "path": "--data", "space_file": "--space"}
    return names.get(name, "--" + name.replace("_", "-"))


@dataclass(frozen=True)
class SearchConfig:
    """Everything that defines a search; saved as ``config.json`` in the run folder."""

    out: str
    caps: tuple[int, ...]  # the caps the search answers; the largest is the hard cap
    max_macs: int | None = None  # multiply-accumulates per image
    max_activation_kb: float | None = None  # peak activation memory, KB (1,024 bytes) at int8
    data: DataConfig = field(default_factory=DataConfig)
    recipe: TrainConfig = field(default_factory=default_recipe)  # what the CLI trains
    space: SpaceConfig | None = None  # default: the space for the data set's images
    trials: int = 50
    timeout: float | None = None
    seed: int = 0  # of the sampler (the recipe carries the training seed)
    device: str = "auto"
    storage: str | None = None  # an Optuna storage URL; default: a file in the run folder
    study_name: str = "budgetnas"
    sampler: str = "motpe"
    # spread: each candidate's size assigned over the cap (search.sizing); sampler: sampled
    sizing: str = "aimed"
    pruner: str = "banded"
    references: tuple[str, ...] = tuple(ZOO)  # zoo networks trained in the study, as yardsticks
    search_recipe: bool = False
    heartbeat: int = 30  # seconds; a trial silent for twice this long is failed and retried
    workers: int = 1  # trial processes on this machine, sharing the study
    # trainings in flight in each trial process (search.study.at_once); None: measured at the
    # start on CUDA (search.study.concurrency), 1 on a CPU
    concurrent: int | None = None
    # fidelities, the last the recipe's (the target); see search.schedule. None: DEFAULT_RUNGS
    # where the target leaves room below it and the pruner allows (see ``auto_rungs``)
    rungs: int | None = None
    # optimizer steps a rung below the target takes at least, and a candidate before the
    # pruner may cut it: MIN_RUNG_STEPS where the rungs are planned for the user (--rungs not
    # given), 0 (none) where the user chose them and in runs made before the floor
    min_rung_steps: int = 0
    eta: int = 3  # each rung costs eta times the one below; the top 1/eta move up
    budget_time: float | None = None  # seconds: sample new candidates while the plan fits
    budget_epochs: float | None = None  # trainings at the target fidelity, the same way
    # the race at the end (search.race): the least new seeds of the answer and the strongest
    # seed network under each cap, and the most any network gets
    verify_seeds: int = 3
    race_seeds: int = 8
    # the race trains an entrant's start seeds as one fused model (trainers.fused); None: the
    # device's default (on for CUDA, off on a CPU)
    fuse_seeds: bool | None = None
    # the yardsticks' share of a --budget-time (search.yardsticks decides, for a new search):
    # the rungs the reference networks are trained at ("all", or only the "target") and the
    # new seeds they are verified with (None: verify_seeds)
    reference_rungs: str = "all"
    reference_seeds: int | None = None
    # --teacher: auto (search.teacher.TEACHER trained on the run's data) or an exported
    # module's path; the search starts by resolving it into the recipe (distill, and the
    # teacher's identity, which the fingerprint holds); --distill: the soft term's weight
    teacher: str | None = None
    distill: float | None = None

    def __post_init__(self) -> None:
        if self.rungs is None:
            object.__setattr__(self, "min_rung_steps", MIN_RUNG_STEPS)
            rungs, _ = auto_rungs(
                epochs=self.recipe.epochs,
                images=self.data.train_images,
                eta=self.eta,
                pruner=self.pruner,
                batch=self.recipe.batch_size,
            )
            object.__setattr__(self, "rungs", rungs)
        caps = self.caps if isinstance(self.caps, (tuple, list)) else (self.caps,)
        if not caps or any(isinstance(c, bool) or not isinstance(c, int) for c in caps):
            raise SearchError(f"caps must be whole numbers of parameters, got {self.caps!r}")
        object.__setattr__(self, "caps", tuple(sorted(set(caps))))
        if self.caps[0] < 1:
            raise SearchError(f"budget must be at least 1 parameter, got {self.caps[0]}")
        check_settings(self)
        object.__setattr__(self, "references", parse_references(self.references))
        self.fidelity_rungs()  # SearchError when they do not fit
        info = self.data.info
        images = {
            "in_channels": info.in_channels,
            "input_size": info.image_size,
            "num_classes": info.num_classes,
            "norm": (info.mean, info.std),
        }
        if self.space is None:
            object.__setattr__(self, "space", SpaceConfig(**images))
        elif any(getattr(self.space, k) != v for k, v in images.items()):
            raise SearchError(f"the space's image settings do not match {self.data.dataset}")
        check_fits_space(self)

    @property
    def cap(self) -> int:
        """The hard cap: the largest cap of the ladder (``--budget``, the user's word)."""
        return self.caps[-1]

    def limits(self, cap: int) -> Limits:
        """Every cap a candidate answering ``cap`` must fit (activation in int8 bytes)."""
        act = self.max_activation_kb
        return Limits(cap, self.max_macs, None if act is None else int(act * 1024))

    @property
    def space_config(self) -> SpaceConfig:
        assert self.space is not None  # filled in by __post_init__
        return self.space

    def fidelity_rungs(self) -> tuple[Rung, ...]:
        """The fidelity rungs of this search, the last the recipe on the training split."""
        return plan_rungs(
            epochs=self.recipe.epochs,
            images=self.data.train_images,
            rungs=self.rungs,
            eta=self.eta,
            min_steps=self.min_rung_steps,
            batch=self.recipe.batch_size,
        )

    @property
    def schedule(self) -> Schedule:
        """The fidelity rungs and the promotion rule of this search."""
        return Schedule(self.fidelity_rungs(), eta=self.eta, lines=self.aim_lines())

    @property
    def seeds_of_references(self) -> int:
        """New seeds each reference network is verified with at the end of the search."""
        return self.verify_seeds if self.reference_seeds is None else self.reference_seeds

    def reference_rung_indices(self) -> tuple[int, ...]:
        """The rungs the reference networks are trained at in the study."""
        if self.reference_rungs == "target":
            return (self.schedule.target.index,)
        return tuple(r.index for r in self.schedule.rungs)

    def reference_specs(self) -> dict[str, tuple[ArchSpec, int]]:
        """The reference networks of this search: zoo key -> (spec for this data set, the
        cap it answers: the smallest cap of the ladder that holds it). Networks over every
        cap, or for other image shapes, are left out."""
        space = self.space_config
        out: dict[str, tuple[ArchSpec, int]] = {}
        for key in self.references:
            spec = ZOO[key].spec
            shape = (spec.in_channels, spec.input_size, spec.num_classes)
            if shape != (space.in_channels, space.input_size, space.num_classes):
                continue
            spec = replace(spec, norm=space.norm)
            holding = [cap for cap in self.caps if count_params(spec) <= cap]
            if holding:
                out[key] = (spec, holding[0])
        return out

    def aims(self, cap: int) -> tuple[int, ...]:
        """The aimed sizes under ``cap`` (``search.schedule.aims``): a share of each of its
        largest reference networks' parameters, largest first; none without references, or
        with another sizing than ``aimed`` (a run made before aims keeps its own)."""
        if self.sizing != "aimed":
            return ()
        params = [count_params(spec) for spec, _ in self.reference_specs().values()]
        smallest = self.space_config.min_size_fraction * cap
        return aims_under(cap, params, smallest=smallest)

    def aim_lines(self) -> tuple[int, ...]:
        """Every cap's aims, ascending: the lines the promotion rule's size bands keep to."""
        return tuple(sorted({a for cap in self.caps for a in self.aims(cap)}))

    def race_aims(self) -> tuple[int, ...]:
        """The aims the race looks under: none when the seed networks are not raced (no
        verdict to aim at)."""
        return self.aim_lines() if self.seeds_of_references else ()

    # ---- what defines a result ---------------------------------------------------------

    def fingerprint(self) -> dict[str, Any]:
        """Everything that defines what a trial is and how it is chosen: data and split,
        recipe, space, caps, the sampler, the pruner and the reference networks."""
        return {
            "version": FINGERPRINT_VERSION,
            "data": self.data.fingerprint(),
            "recipe": self.recipe.to_dict(),
            "space": self.space_config.to_dict(),
            "caps": list(self.caps),
            "max_macs": self.max_macs,
            "max_activation_kb": self.max_activation_kb,
            "search_recipe": self.search_recipe,
            "rungs": [[r.epochs, r.images] for r in self.schedule.rungs],
            "eta": self.eta,
            "sampler": self.sampler,
            "pruner": self.pruner,
            "references": list(self.references),
            # only when assigned: runs whose sampler chose sizes keep their fingerprint
            **({"sizing": self.sizing} if self.sizing != "sampler" else {}),
            # only when trimmed to a time budget: other runs keep their fingerprint
            **({"reference_rungs": self.reference_rungs} if self.reference_rungs != "all" else {}),
        }

    def resumed(self, **given: Any) -> SearchConfig:
        """This config with the settings a resume may change; any other is refused."""
        refused = [name for name in given if name not in RESUMABLE]
        if refused:
            raise SearchError(
                f"--resume continues a run with its stored settings; "
                f"{', '.join(map(flag, refused))} cannot be changed "
                f"(allowed with --resume: {', '.join(map(flag, RESUMABLE))})"
            )
        data_dir = given.pop("data_dir", None)
        path = given.pop("path", None)
        if path is not None:
            self._check_same_kind(Path(path))
        cfg = replace(self, **given)
        if data_dir is not None:
            cfg = replace(cfg, data=replace(cfg.data, data_dir=str(Path(data_dir).resolve())))
        if path is not None:  # the same images, moved (the data digest checks they are)
            cfg = replace(cfg, data=replace(cfg.data, path=str(Path(path).resolve())))
        return cfg

    def _check_same_kind(self, path: Path) -> None:
        """``--data PATH`` on a resume names the run's own images, moved: a run on another
        data set, or on images of the other kind (a folder, an .npz), is refused in one line."""
        if path.is_dir():
            kind = "folder"
        elif path.is_file() or path.suffix == ".npz":
            kind = "npz"
        else:
            kind = None  # not there: reading it says so
        if self.data.path is not None and kind in (None, self.data.dataset):
            return
        if self.data.path is None:
            theirs = f"the {self.data.dataset} data set"
        else:
            theirs = f"the {'.npz' if self.data.dataset == 'npz' else 'folder'} {self.data.path}"
        ours = {"npz": "the .npz ", "folder": "the folder ", None: ""}[kind]
        raise SearchError(
            f"{self.out} was searched on {theirs}, not on {ours}{path}: --data with --resume "
            "points at the run's own images where they have moved; search other data in a "
            "new run (--out)"
        )

    # ---- where the study lives -----------------------------------------------------------

    def storage_url(self) -> str:
        """--storage, else the run folder's own file: a journal file for several worker
        processes (SQLite would lock under concurrent writers), SQLite otherwise. A run keeps
        the kind of file it was created with."""
        if self.storage:
            return self.storage
        out = Path(self.out).resolve()
        journal = (out / JOURNAL_FILE).is_file() or (
            self.workers > 1 and not (out / STUDY_FILE).is_file()
        )
        return journal_url(out / JOURNAL_FILE) if journal else f"sqlite:///{out / STUDY_FILE}"

    # ---- JSON --------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["caps"] = list(self.caps)
        d["references"] = list(self.references)
        d["data"] = asdict(self.data)
        d["recipe"] = self.recipe.to_dict()
        d["space"] = self.space_config.to_dict()
        for name in ("teacher", "distill"):  # runs without a teacher keep their config.json
            if d[name] is None:
                del d[name]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchConfig:
        if "caps" not in data:
            data = _from_flat(data)
        # runs made before samplers, references, rungs and sizing were settings:
        # single-objective TPE, none, one rung, sizes chosen by the sampler
        data = {"sampler": "tpe", "references": [], "rungs": 1, "sizing": "sampler", **data}
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["caps"] = tuple(kwargs["caps"])
        kwargs["references"] = tuple(kwargs["references"])
        kwargs["data"] = DataConfig(**kwargs.get("data", {}))
        kwargs["recipe"] = TrainConfig.from_dict(kwargs.get("recipe", {}))
        if kwargs.get("space") is not None:
            kwargs["space"] = SpaceConfig.from_dict(kwargs["space"])
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str) -> SearchConfig:
        return cls.from_dict(json.loads(text))


def _from_flat(d: dict[str, Any]) -> dict[str, Any]:
    """A config.json of the first, flat layout, in today's composed one."""
    data_keys = ("dataset", "val_size", "split_seed", "train_subset", "data_dir", "download")
    recipe_keys = ("epochs", "batch_size", "lr", "optimizer", "label_smoothing")
    out = {k: v for k, v in d.items() if k not in (*data_keys, *recipe_keys, "augment")}
    out["caps"] = list(d.get("ladder") or [d["budget"]])
    out["data"] = {k: d[k] for k in data_keys if k in d}
    recipe = {k: d[k] for k in recipe_keys if k in d}
    recipe["augment"] = asdict(AugmentConfig.scaled(float(d.get("augment", 1.0))))
    recipe["seed"] = d.get("seed", 0)
    out["recipe"] = recipe
    return out


def parse_references(value: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``all``, ``none`` or ``001,004`` (or a sequence of zoo keys) -> zoo keys."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "all":
            return tuple(ZOO)
        keys = () if text in ("none", "") else tuple(k.strip() for k in text.split(","))
    else:
        keys = tuple(value)
    unknown = [k for k in keys if k not in ZOO]
    if unknown:
        raise SearchError(
            f"--references: no zoo entry {unknown[0]!r}; use all, none or keys of {', '.join(ZOO)}"
        )
    return tuple(dict.fromkeys(keys))
