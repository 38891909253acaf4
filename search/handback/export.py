"""Export a trained network as a standalone module + weights, and report its test accuracy.

The network is the one asked for, or the searched network a user should take (the best
verified one, else the search's best under the cap; never a reference network). Its weights
are the best that exist in the run, whichever trial holds them (a candidate promoted to a
higher rung is trained again there): from the highest fidelity it was trained at (the
search's own training, or a ``verify`` seed), the best validation accuracy there.

This is the one place (with ``verify``) where the test split is read: after the architecture
and its weights were chosen on validation, to report a number, never to choose.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import torch

from budgetnas.search.errors import SearchError
from budgetnas.search.handback.weights import (
    Weights,
    best_weights,
    choose_network,
    network_key,
    network_verdict,
    relation,
    weight_choices,
)
from budgetnas.search.study.config import SearchConfig
from budgetnas.search.study.runs import open_run, trial_spec
from budgetnas.search.verification.records import (
    network_label,
)
from budgetnas.space.render import render
from budgetnas.trainers.data import Split, TrainVal
from budgetnas.trainers.evaluate import evaluate, resolve_device
from budgetnas.trainers.recipe import TrainConfig

if TYPE_CHECKING:
    from budgetnas.search.handback.deploy import OnnxReport


@dataclass(frozen=True)
class ExportResult:
    module: Path  # the .py module, or the .onnx model
    weights: Path  # the .pt weights, or the int8 model (the .onnx itself without one)
    trial: int
    label: str  # "trial 12", or "seed 001" for a reference network
    params: int
    val_acc: float  # of the weights shipped
    test_acc: float  # of the weights shipped, measured here
    shipped: Weights
    why: str  # why this network
    onnx: OnnxReport | None = None
    refit_images: int | None = None  # trained again on train + validation: their number
    note: str | None = None  # the shipped weights belong to another trial of the network
    verdict: str | None = None  # how the network stands against the seed networks under the cap

    @property
    def weights_name(self) -> str:
        """The shipped weights as a user reads them: ``verify seed 0 of trial 8``."""
        return self.shipped.name((self.label, f"trial {self.trial}"))

    def lines(self) -> list[str]:
        """What ``budgetnas export`` prints: which network and why, which weights with their
        validation and test accuracy (or the refit), the verdict, and what was written."""
        w = self.shipped
        out = [f"{self.label}: {self.params:,} parameters; chosen: {self.why}"]
        if self.refit_images:
            out.append(
                f"weights: refit on {self.refit_images:,} training + validation images as "
                f"{self.weights_name} was trained ({w.fidelity}): the same "
                f"{w.train_images:,} training images and the "
                f"{self.refit_images - w.train_images:,} validation images; validation "
                f"accuracy {w.val_acc:.2%} before the refit, none after: its images were "
                f"trained on; test accuracy {self.test_acc:.2%}"
            )
        else:
            out.append(
                f"weights: {self.weights_name} ({w.fidelity}): validation accuracy "
                f"{self.val_acc:.2%}, test accuracy {self.test_acc:.2%}"
            )
        out += [f"note: {self.note}"] if self.note else []
        out += [f"verdict: {self.verdict}"] if self.verdict else []
        r = self.onnx
        if r is None:
            return [*out, f"wrote {self.module} and {self.weights}"]
        out.append(
            f"onnx: {r.path} ({r.size_bytes / 1024:.1f} KB); max |onnxruntime - torch| over "
            f"the test set {r.max_abs_diff:.2e}; test accuracy torch {r.torch_acc:.2%}, "
            f"onnxruntime {r.onnx_acc:.2%}"
        )
        if r.int8_path is not None:
            out.append(
                f"int8: {r.int8_path} ({r.int8_size_bytes / 1024:.1f} KB); test accuracy int8 "
                f"{r.int8_acc:.2%}, float {r.onnx_acc:.2%}"
            )
        return out


def import_module_from(path: Path) -> ModuleType:
    """Import a Python file as a fresh module (not cached under its name)."""
    name = f"_budgetnas_export_{abs(hash(path.resolve()))}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    return module


FORMATS = ("py", "onnx")


def export_trial(
    run: Path | str,
    *,
    out: Path | str,
    trial: int | None = None,
    force: bool = False,
    data_dir: Path | str | None = None,
    device: str = "cpu",
    format: str = "py",
    int8: bool = False,
    refit: bool = False,
) -> ExportResult:
    """Export a trained trial and evaluate it on the test set.

    ``py``: ``out`` (a .py module that needs only torch) and its weights beside it (.pt).
    ``onnx``: ``out`` (.onnx), checked against PyTorch on the whole test set; with ``int8``
    also ``*.int8.onnx``, quantized with calibration on training images only.
    """
    if format not in FORMATS:
        raise SearchError(f"unknown format {format!r}; choose {', '.join(FORMATS)}")
    if int8 and format != "onnx":
        raise SearchError("--int8 needs --format onnx")
    out = Path(out)
    if out.suffix != f".{format}":
        raise SearchError(f"--out must name a .{format} file, got {out}")
    if format == "onnx":
        from budgetnas.search.handback.deploy import need_deploy

        need_deploy()  # before anything is read or written
    cfg, study = open_run(run)
    chosen, why = choose_network(cfg, study, trial)
    written = [out, out.with_suffix(".pt" if format == "py" else ".int8.onnx")]
    existing = [p for p in written if p.exists() and (format == "py" or int8 or p == out)]
    if existing and not force:
        raise SearchError(
            f"{', '.join(map(str, existing))} already exist(s); pass --force to overwrite"
        )
    label = network_label(network_key(chosen))
    recorded = weight_choices(cfg, study, chosen)
    # weights another machine trained (a worker's own --out) are recorded but not here
    choices = [w for w in recorded if (Path(run) / w.path).is_file()]
    if not choices:
        where = f" (recorded: {', '.join(w.path for w in recorded)})" if recorded else ""
        raise SearchError(
            f"{label} has no weights in this run folder{where}; a search keeps those of trials "
            f"on a front, verified or seed networks only: budgetnas verify {run} --trial "
            f"{chosen.number} trains it again with new seeds and keeps their weights"
        )
    shipped = best_weights(choices)
    weights_src = Path(run) / shipped.path
    if not weights_src.is_file():
        raise SearchError(f"weights of {label} are missing: {weights_src}")
    spec = trial_spec(chosen)
    dev = resolve_device(device)
    data = replace(cfg.data, data_dir=str(data_dir) if data_dir is not None else cfg.data.data_dir)
    test = data.load_test(dev)
    state = torch.load(weights_src, map_location="cpu", weights_only=True)
    refit_images = None
    if refit:
        state, refit_images = _refit(cfg, spec, shipped, dev)
    note = None
    if shipped.of not in (label, f"trial {chosen.number}"):
        note = (
            f"{relation(study, chosen, shipped.of)}, the same network; export takes the best "
            "weights the network has in the run (the highest fidelity it was trained at, then "
            "validation)"
        )
    result = ExportResult(
        module=out,
        weights=written[1],
        trial=chosen.number,
        label=label,
        params=int(chosen.user_attrs["params"]),
        val_acc=shipped.val_acc,
        test_acc=0.0,
        shipped=shipped,
        why=why,
        refit_images=refit_images,
        note=note,
        verdict=network_verdict(cfg, study, chosen),
    )
    if format == "onnx":
        return _onnx(result, spec, state, data, test, int8=int8)

    name = (
        f"Seed network {label.removeprefix('seed ')} (a hand-made reference, trial {chosen.number})"
        if label.startswith("seed")
        else label.capitalize()
    )
    weights = (
        f"refit on {refit_images:,} training + validation images as {result.weights_name} "
        f"was trained ({shipped.fidelity}; the same {shipped.train_images:,} training images); "
        "no validation accuracy"
        if refit_images
        else shipped.describe((label, f"trial {chosen.number}"))
    )
    doc = (
        f"{name} of a budgetnas search on {cfg.data.dataset} (cap {cfg.cap:,} "
        f"parameters).\nWeights: {weights}."
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(spec, doc=doc), encoding="utf-8")
    torch.save(state, result.weights)

    module = import_module_from(out)  # evaluate what was written, not what is in memory
    net = module.load(result.weights).to(dev)
    if sum(p.numel() for p in net.parameters()) != module.NUM_PARAMS:
        raise SearchError(f"{out}: NUM_PARAMS does not match the module")  # pragma: no cover
    return replace(result, test_acc=evaluate(net, test))


def _training_images(cfg: SearchConfig, shipped: Weights, device) -> TrainVal:
    """The training images ``shipped`` was trained on, exactly: the search's are the run's
    training split or, at a lower rung, the first ``train_images`` of it (``TrainVal.first``);
    ``verify``'s are the full training split, or the subset ``verify --train-subset`` carves
    from it (``DataConfig.train_subset``, whatever subset the search itself used)."""
    from budgetnas.search.study.teacher import attach_teacher

    data, images = cfg.data, shipped.train_images
    recipe = TrainConfig.from_dict(shipped.recipe or cfg.recipe.to_dict())
    if shipped.source == "search":  # with its rows of the teacher's soft targets, if any
        return attach_teacher(data.load(device), recipe, cfg.out).first(images)
    full = data.info.train_size - data.val_images
    loaded = replace(data, train_subset=None if images >= full else images).load(device)
    return attach_teacher(loaded, recipe, cfg.out)


def _refit(cfg: SearchConfig, spec, shipped: Weights, device) -> tuple[dict, int]:
    """``spec`` trained again as ``shipped`` was (its recipe, seed and training images) on
    those images and the validation split together; returns the weights and the image
    count. Nothing is left to validate it on: the test set only reports."""
    from budgetnas.search.study.teacher import refit_targets
    from budgetnas.trainers.train import train

    data = _training_images(cfg, shipped, device)
    both = Split(torch.cat([data.train.x, data.val.x]), torch.cat([data.train.y, data.val.y]))
    recipe = TrainConfig.from_dict(shipped.recipe or cfg.recipe.to_dict())
    soft = refit_targets(data, recipe, cfg.out)  # a distilled recipe: the teacher's on both
    result = train(spec, TrainVal(data.info, both, data.val, soft=soft), recipe, device=device)
    state = {k: v.cpu() for k, v in result.model.state_dict().items()}
    return state, len(both)


def calibration_images(train: Split, n: int, *, seed: int = 0) -> torch.Tensor:
    """``n`` images drawn (seeded) from the training split: what int8 is calibrated on."""
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:n]
    return train.x.cpu()[pick.sort().values]


def _onnx(result: ExportResult, spec, state, data, test, *, int8: bool) -> ExportResult:
    from budgetnas.search.handback.deploy import CALIBRATION_IMAGES, deploy
    from budgetnas.space.build import build

    net = build(spec)
    net.load_state_dict(state)
    calibration = None
    if int8:
        train = data.load("cpu").train  # the training split: never validation or test
        calibration = calibration_images(train, CALIBRATION_IMAGES)
    report = deploy(
        net.eval(), result.module, test_x=test.x, test_y=test.y, calibration_x=calibration
    )
    return replace(
        result,
        weights=report.int8_path or result.module,
        test_acc=report.onnx_acc,
        onnx=report,
    )
