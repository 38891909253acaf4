"""Export a trained trial as a standalone module + weights, and report its test accuracy.

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
from optuna.trial import FrozenTrial, TrialState

from budgetnas.reports.frame import trials_frame
from budgetnas.reports.pareto import best_row
from budgetnas.search.errors import SearchError
from budgetnas.search.runs import accuracy, open_run, trial_spec
from budgetnas.space.render import render
from budgetnas.trainers.data import Split
from budgetnas.trainers.evaluate import evaluate, resolve_device

if TYPE_CHECKING:
    from budgetnas.search.deploy import OnnxReport


@dataclass(frozen=True)
class ExportResult:
    module: Path  # the .py module, or the .onnx model
    weights: Path  # the .pt weights, or the int8 model (the .onnx itself without one)
    trial: int
    params: int
    val_acc: float
    test_acc: float
    onnx: OnnxReport | None = None


def pick_trial(trials: list[FrozenTrial], number: int | None, *, cap: int) -> FrozenTrial:
    """Trial ``number``, or the best completed one under the cap; ``SearchError`` if unusable."""
    by_number = {t.number: t for t in trials}
    if number is None:
        best = best_row(trials_frame(trials), cap=cap)
        if best is None:
            raise SearchError("the run has no completed trial to export yet")
        return by_number[int(best["number"])]
    if number not in by_number:
        last = max(by_number) if by_number else None
        have = f"trials 0..{last}" if last is not None else "no trials"
        raise SearchError(f"trial {number} does not exist (the study has {have})")
    trial = by_number[number]
    if trial.state != TrialState.COMPLETE:
        state = "rejected" if trial.user_attrs.get("rejected") else trial.state.name.lower()
        raise SearchError(f"trial {number} was {state}; only completed trials have weights")
    return trial


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
        from budgetnas.search.deploy import need_deploy

        need_deploy()  # before anything is read or written
    cfg, study = open_run(run)
    chosen = pick_trial(study.get_trials(deepcopy=False), trial, cap=cfg.budget)
    written = [out, out.with_suffix(".pt" if format == "py" else ".int8.onnx")]
    existing = [p for p in written if p.exists() and (format == "py" or int8 or p == out)]
    if existing and not force:
        raise SearchError(
            f"{', '.join(map(str, existing))} already exist(s); pass --force to overwrite"
        )
    weights_src = Path(run) / chosen.user_attrs.get("weights", "")
    if not weights_src.is_file():
        raise SearchError(f"weights of trial {chosen.number} are missing: {weights_src}")
    spec = trial_spec(chosen)
    dev = resolve_device(device)
    data = replace(cfg.data, data_dir=str(data_dir) if data_dir is not None else cfg.data.data_dir)
    test = data.load_test(dev)
    state = torch.load(weights_src, map_location="cpu", weights_only=True)
    result = ExportResult(
        module=out,
        weights=written[1],
        trial=chosen.number,
        params=int(chosen.user_attrs["params"]),
        val_acc=float(accuracy(chosen)),
        test_acc=0.0,
    )
    if format == "onnx":
        return _onnx(result, spec, state, data, test, int8=int8)

    doc = (
        f"Trial {chosen.number} of a budgetnas search on {cfg.data.dataset} "
        f"(cap {cfg.budget:,} parameters, {cfg.recipe.epochs} epochs);\n"
        f"validation accuracy {accuracy(chosen):.4f}."
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(spec, doc=doc), encoding="utf-8")
    torch.save(state, result.weights)

    module = import_module_from(out)  # evaluate what was written, not what is in memory
    net = module.load(result.weights).to(dev)
    if sum(p.numel() for p in net.parameters()) != module.NUM_PARAMS:
        raise SearchError(f"{out}: NUM_PARAMS does not match the module")  # pragma: no cover
    return replace(result, test_acc=evaluate(net, test))


def calibration_images(train: Split, n: int, *, seed: int = 0) -> torch.Tensor:
    """``n`` images drawn (seeded) from the training split: what int8 is calibrated on."""
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:n]
    return train.x.cpu()[pick.sort().values]


def _onnx(result: ExportResult, spec, state, data, test, *, int8: bool) -> ExportResult:
    from budgetnas.search.deploy import CALIBRATION_IMAGES, deploy
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
