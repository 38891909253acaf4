"""The teacher a recipe distils from (``--teacher``): trained once, its soft targets kept.

``auto``: ``TEACHER``, a fixed network of 102,826 parameters (five padded 3x3 convs of 32-64
channels, two max-pools, a 1x1 conv head with global average pooling), about ten times the
networks searched under the usual caps, trained on the run's training split with the run's
recipe (distillation off, at least ``TEACHER_EPOCHS`` epochs: its cost is paid once) through
the results cache, so a second search on the same data and recipe reuses it. A path: a
module written by ``budgetnas export`` (its .py, with the .pt beside it), whatever network
it holds, for the same images and classes.

Its soft targets are its logits on every image of the training split, un-augmented, in eval
mode (``trainers.distill.soft_targets``), computed once and kept in the run folder
(``TEACHER_FILE``) with the teacher itself (its spec or its module's source, and its
weights), so that a resumed search, a worker, ``verify`` and ``export --refit`` find them, and
training images other than the search's (verify on the full split of a search on a subset)
get the same teacher's. The recipe names the teacher by the sha256 of its soft targets
(``TrainConfig.teacher``), so the study's fingerprint and every cache key change with it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from budgetnas.search.cache.reuse import cached_train
from budgetnas.search.cache.store import ResultCache
from budgetnas.search.errors import SearchError
from budgetnas.space.build import build
from budgetnas.space.count import count_params
from budgetnas.space.spec import ArchSpec, Conv, Head, Pool
from budgetnas.trainers.data import Split, TrainVal
from budgetnas.trainers.distill import SoftTargets, soft_targets
from budgetnas.trainers.recipe import LATER_DEFAULTS, TrainConfig
from budgetnas.trainers.train import TrainResult

if TYPE_CHECKING:
    from budgetnas.search.study.config import SearchConfig

__all__ = [
    "DEFAULT_DISTILL",
    "TEACHER",
    "TEACHER_EPOCHS",
    "TEACHER_FILE",
    "attach_teacher",
    "auto_teacher",
    "parse_teacher",
    "path_teacher",
    "refit_targets",
    "start_teacher",
    "teacher_recipe",
    "teacher_spec",
]

TEACHER_FILE = "teacher.pt"  # in the run folder: the soft targets and what they belong to
TEACHER_EPOCHS = 5  # the auto teacher trains at least this many epochs
DEFAULT_DISTILL = 0.5  # the soft term's weight when --teacher is given without --distill
TEACHER = ArchSpec(
    blocks=(
        Conv(32, pad=1),
        Conv(32, pad=1),
        Pool(),
        Conv(64, pad=1),
        Conv(64, pad=1),
        Pool(),
        Conv(64, pad=1),
    ),
    head=Head(kind="conv_gap", k=1),
)


def parse_teacher(value: str | None) -> str | None:
    """``--teacher``: ``auto``, ``none`` (None) or the path of an exported module (.py)."""
    if value is None or value.strip().lower() in ("", "none"):
        return None
    if value.strip().lower() == "auto":
        return "auto"
    path = Path(value).expanduser()
    if path.suffix != ".py" or not path.is_file():
        raise SearchError(
            f"--teacher {value}: not auto, none or a module written by budgetnas export "
            "(a .py file with its .pt beside it)"
        )
    return str(path.resolve())


def teacher_spec(data: TrainVal) -> ArchSpec:
    """``TEACHER`` for ``data``'s images: its channels, size, classes and normalisation."""
    info = data.info
    return replace(
        TEACHER,
        in_channels=info.in_channels,
        input_size=info.image_size,
        num_classes=info.num_classes,
        norm=(info.mean, info.std),
    )


def teacher_recipe(recipe: TrainConfig) -> TrainConfig:
    """The run's recipe without distillation, for at least ``TEACHER_EPOCHS`` epochs."""
    return replace(
        recipe,
        epochs=max(recipe.epochs, TEACHER_EPOCHS),
        distill=0.0,
        temperature=LATER_DEFAULTS["temperature"],
        teacher=None,
    )


def auto_teacher(
    data: TrainVal,
    recipe: TrainConfig,
    *,
    cache: ResultCache | None,
    device: torch.device | str = "cpu",
) -> TrainResult:
    """``TEACHER`` trained on ``data`` with ``teacher_recipe(recipe)``, through ``cache``."""
    result, _ = cached_train(cache, teacher_spec(data), data, teacher_recipe(recipe), device=device)
    return result


def path_teacher(path: str | Path) -> nn.Module:
    """The network of a module written by ``budgetnas export`` (its ``load()`` returns it with
    the weights of the .pt beside it)."""
    path = Path(path)
    try:
        spec = importlib.util.spec_from_file_location(f"budgetnas_teacher_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise ImportError("not a Python module")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        net = module.load()
    except Exception as err:  # any failure of a user's file: one line
        raise SearchError(
            f"--teacher {path}: could not load its network ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}); give a module written by "
            "budgetnas export, with its .pt beside it"
        ) from None
    if not isinstance(net, nn.Module):
        raise SearchError(f"--teacher {path}: load() did not return a torch network")
    return net.float()


def _logits(net: nn.Module, split: Split, source: str, classes: int) -> torch.Tensor:
    try:
        logits = soft_targets(net, split)
    except RuntimeError as err:
        raise SearchError(
            f"--teacher {source}: its network does not take this data's images "
            f"({str(err).splitlines()[0]})"
        ) from None
    if logits.shape != (len(split), classes):
        raise SearchError(
            f"--teacher {source}: its network gives {logits.shape[-1]} outputs per image; the "
            f"data has {classes} classes"
        )
    return logits.cpu()


def start_teacher(
    cfg: SearchConfig,
    data: TrainVal,
    *,
    device: torch.device,
    cache: ResultCache | None,
    quiet: bool = False,
) -> tuple[SearchConfig, TrainVal]:
    """A new search's ``--teacher``: trained (``auto``) or loaded (a path), kept in the run
    folder with its soft targets on the training split; returns the config whose recipe
    distils from it and ``data`` carrying the soft targets."""
    if cfg.teacher is None:
        return cfg, data
    if cfg.teacher == "auto":
        spec = teacher_spec(data)
        result = auto_teacher(data, cfg.recipe, cache=cache, device=device)
        net, source, network = result.model, "auto", {"spec": spec.to_json()}
        what = (
            f"{count_params(spec):,} parameters, {teacher_recipe(cfg.recipe).epochs} epochs, "
            f"validation {result.val_acc:.2%}"
        )
    else:
        path = Path(cfg.teacher)
        net, source = path_teacher(path).to(device), cfg.teacher
        network = {"module": path.read_text(encoding="utf-8"), "path": str(path)}
        what = f"{sum(p.numel() for p in net.parameters()):,} parameters"
    soft = SoftTargets.of(_logits(net, data.train, source, data.info.num_classes))
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "id": soft.id,
            "logits": soft.logits.cpu(),
            "images": _images_digest(data.train),
            "source": source,
            "network": network,
            "state": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        },
        out / TEACHER_FILE,
    )
    distill = DEFAULT_DISTILL if cfg.distill is None else cfg.distill
    recipe = replace(cfg.recipe, distill=distill, teacher=soft.id)
    if not quiet:
        print(
            f"teacher: {source} ({what}); kept in {out / TEACHER_FILE} ({soft.id[:12]}), "
            f"weight {distill:g}, temperature {recipe.temperature:g}",
            file=sys.stderr,
        )
    return replace(cfg, recipe=recipe), replace(
        data, soft=SoftTargets(soft.logits.to(data.train.x.device), soft.id)
    )


def _network(held: dict, device: torch.device) -> nn.Module:
    """The teacher kept in a run folder, with its weights."""
    network = held["network"]
    if "spec" in network:
        net = build(ArchSpec.from_json(network["spec"]))
    else:  # an exported module: its own source defines Net
        namespace = {"__file__": network["path"], "__name__": "budgetnas_teacher"}
        exec(compile(network["module"], network["path"], "exec"), namespace)
        net = namespace["Net"]()
    net.load_state_dict(held["state"])
    return net.to(device).eval()


def _images_digest(train: Split) -> str:
    h = hashlib.sha256()
    for t in (train.x, train.y):
        h.update(f"{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def attach_teacher(data: TrainVal, recipe: TrainConfig, run: Path | str) -> TrainVal:
    """``data`` with the soft targets of the recipe's teacher, kept in the run folder (``data``
    itself when the recipe does not distil): those computed when the search started, or, for
    other training images (``verify`` on the full split of a search on a subset), the kept
    teacher's on these, under the same identity (the data digest tells the images apart)."""
    if not recipe.distill:
        return data
    held = _held(recipe, run)
    device = data.train.x.device
    if held.get("images") == _images_digest(data.train):
        logits = held["logits"]
    else:
        logits = soft_targets(_network(held, device), data.train)
    return replace(data, soft=SoftTargets(logits.to(device), held["id"]))


def refit_targets(data: TrainVal, recipe: TrainConfig, run: Path | str) -> SoftTargets | None:
    """The soft targets of ``data``'s training and validation images together, in that
    order (``export --refit`` trains on both); None when the recipe does not distil."""
    if not recipe.distill or data.soft is None:
        return None
    device = data.soft.logits.device
    val = soft_targets(_network(_held(recipe, run), device), data.val)
    return SoftTargets(torch.cat([data.soft.logits, val.to(device)]), data.soft.id)


def _held(recipe: TrainConfig, run: Path | str) -> dict:
    path = Path(run) / TEACHER_FILE
    try:
        held = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError):
        raise SearchError(
            f"the recipe distils from teacher {str(recipe.teacher)[:12]}, but {path} cannot be "
            "read: the run's teacher is kept there (copy it with the run folder)"
        ) from None
    if held.get("id") != recipe.teacher:
        raise SearchError(f"{path} holds another teacher than the recipe's: the run is damaged")
    return held
