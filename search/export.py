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

import torch
from optuna.trial import FrozenTrial, TrialState

from budgetnas.reports.frame import trials_frame
from budgetnas.reports.pareto import best_row
from budgetnas.search.errors import SearchError
from budgetnas.search.runs import accuracy, open_run, trial_spec
from budgetnas.space.render import render
from budgetnas.trainers.evaluate import evaluate, resolve_device


@dataclass(frozen=True)
class ExportResult:
    module: Path
    weights: Path
    trial: int
    params: int
    val_acc: float
    test_acc: float


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


def export_trial(
    run: Path | str,
    *,
    out: Path | str,
    trial: int | None = None,
    force: bool = False,
    data_dir: Path | str | None = None,
    device: str = "cpu",
) -> ExportResult:
    """Write ``out`` (a .py module) and its weights beside it (.pt); evaluate on the test set."""
    cfg, study = open_run(run)
    chosen = pick_trial(study.get_trials(deepcopy=False), trial, cap=cfg.budget)
    out = Path(out)
    if out.suffix != ".py":
        raise SearchError(f"--out must name a .py file, got {out}")
    weights_out = out.with_suffix(".pt")
    existing = [p for p in (out, weights_out) if p.exists()]
    if existing and not force:
        raise SearchError(
            f"{', '.join(map(str, existing))} already exist(s); pass --force to overwrite"
        )
    weights_src = Path(run) / chosen.user_attrs.get("weights", "")
    if not weights_src.is_file():
        raise SearchError(f"weights of trial {chosen.number} are missing: {weights_src}")
    spec = trial_spec(chosen)
    dev = resolve_device(device)
    root = str(data_dir) if data_dir is not None else cfg.data.data_dir
    test = replace(cfg.data, data_dir=root).load_test(dev)

    state = torch.load(weights_src, map_location="cpu", weights_only=True)
    doc = (
        f"Trial {chosen.number} of a budgetnas search on {cfg.data.dataset} "
        f"(cap {cfg.budget:,} parameters, {cfg.recipe.epochs} epochs);\n"
        f"validation accuracy {accuracy(chosen):.4f}."
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(spec, doc=doc), encoding="utf-8")
    torch.save(state, weights_out)

    module = import_module_from(out)  # evaluate what was written, not what is in memory
    net = module.load(weights_out).to(dev)
    if sum(p.numel() for p in net.parameters()) != module.NUM_PARAMS:
        raise SearchError(f"{out}: NUM_PARAMS does not match the module")  # pragma: no cover
    test_acc = evaluate(net, test)
    return ExportResult(
        module=out,
        weights=weights_out,
        trial=chosen.number,
        params=int(module.NUM_PARAMS),
        val_acc=float(accuracy(chosen)),
        test_acc=test_acc,
    )
