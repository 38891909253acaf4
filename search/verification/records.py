"""Verification results as stored on a study: read without training anything.

``budgetnas verify`` (``search.verify``) retrains chosen architectures and stores one
``Verified`` record per architecture *and fidelity* (epochs, training images, recipe) as its
own study user attribute, ``verify:<network>@<fidelity id>``. So results at different
fidelities never mix in one mean, and several ``verify`` processes can work on one study at
once without overwriting each other. Reports read them back from here.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

import optuna

from budgetnas.trainers.recipe import LATER_DEFAULTS

VERIFY_PREFIX = "verify:"
LEGACY_ATTR = "verify"  # one dict of every record, as the first version stored them


@dataclass(frozen=True)
class Fidelity:
    """How a verified network was trained: the recipe (its seed aside) and the images."""

    epochs: int
    train_images: int  # images per epoch (the full training split, or a subset)
    recipe: dict[str, Any]  # the whole recipe, seed left out

    @property
    def id(self) -> str:
        text = json.dumps([self.epochs, self.train_images, self.recipe], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:8]

    @property
    def image_epochs(self) -> int:
        """How much training it is: epochs x images per epoch (higher: a higher fidelity)."""
        return self.epochs * self.train_images

    def label(self) -> str:
        r = self.recipe
        aug = r.get("augment") or {}
        strength = (aug.get("degrees") or 0.0) / 10.0
        return (
            f"{self.epochs} ep x {self.train_images:,} img, {r.get('optimizer')} "
            f"lr {r.get('lr'):g} b{r.get('batch_size')} aug {strength:g}"
            + (f" ls {r['label_smoothing']:g}" if r.get("label_smoothing") else "")
            + (
                f" m {r['momentum']:g}"
                if r.get("optimizer") == "sgd" and r.get("momentum", 0.9) != 0.9
                else ""
            )
            + (f" beta1 {r.get('beta1', 0.9):g}" if r.get("optimizer") == "adamw" else "")
            + (f" wd {r['weight_decay']:g}" if r.get("weight_decay", 5e-4) != 5e-4 else "")
            + (f" {r['precision']}" if r.get("precision", "fp32") != "fp32" else "")
        )

    def differences(self, target: Fidelity) -> str:
        """What this fidelity has that ``target`` has not, for a label: ``lr 1000 (target
        0.05), 2 ep (target 3)``; empty when they are the same."""
        parts = []
        if self.epochs != target.epochs:
            parts.append(f"{self.epochs} ep (target {target.epochs})")
        if self.train_images != target.train_images:
            parts.append(f"{self.train_images:,} img (target {target.train_images:,})")
        keys = [*self.recipe, *(k for k in target.recipe if k not in self.recipe)]
        for key in keys:
            # a setting stored only when set (precision, channels_last) is at its default
            mine = self.recipe.get(key, LATER_DEFAULTS.get(key))
            theirs = target.recipe.get(key, LATER_DEFAULTS.get(key))
            if key != "epochs" and mine != theirs:
                name = _SHORT.get(key, key.replace("_", " "))
                mine_s, theirs_s = _setting(mine), _setting(theirs)
                if mine_s == theirs_s:  # an augmentation of the same strength, another shape
                    mine_s, theirs_s = str(mine), str(theirs)
                parts.append(f"{name} {mine_s} (target {theirs_s})")
        return ", ".join(parts)


_SHORT = {"augment": "aug", "batch_size": "batch", "label_smoothing": "ls", "weight_decay": "wd"}


def _setting(value: Any) -> str:
    """A recipe setting as a label shows it: numbers in %g, an augmentation by its strength."""
    if isinstance(value, dict):
        return f"{(value.get('degrees') or 0.0) / 10.0:g}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def mean_spread(values: list[float]) -> str:
    """``97.10% ± 0.20%`` over several seeds; one seed has no spread: ``97.10% (1 seed)``;
    none: ``-``."""
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.2%} (1 seed)"
    return f"{statistics.fmean(values):.2%} ± {statistics.stdev(values):.2%}"


def this_process() -> str:
    """``host:pid`` of this process (as a trial's ``worker`` names its process)."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class SeedRun:
    seed: int
    val_acc: float
    test_acc: float
    epochs: int
    train_time_s: float
    device: str
    weights: str | None = None  # the trained weights, relative to the run folder
    cached: bool = False  # reused from the results cache (search.cache), not trained here
    # the process that recorded it (host:pid; empty in records stored before it was kept):
    # which of a search's processes verified it
    worker: str = field(default_factory=this_process)


@dataclass(frozen=True)
class FailedSeed:
    """A verify seed whose training failed: recorded, never counted in a mean."""

    seed: int
    error: str  # "TrainingError: training loss became nan in epoch 2"
    device: str
    diverged: bool = True  # the loss became NaN/inf: the same recipe and seed fail again

    @property
    def retry(self) -> bool:
        """Whether a later verify at the same fidelity trains this seed again: a diverged
        training is a result (reproducible), a lack of device memory is not."""
        return not self.diverged


def network_label(key: str) -> str:
    """``trial-12`` -> ``trial 12``; ``zoo-001`` -> ``seed 001`` (a reference network)."""
    kind, _, name = key.partition("-")
    return f"seed {name}" if kind == "zoo" else f"{kind} {name}"


@dataclass
class Verified:
    key: str  # "trial-12" or "zoo-001"
    params: int
    spec: str
    recipe: dict  # the recipe it was searched (or, for the zoo, is run) with
    search_val_acc: float | None
    fidelity: Fidelity | None = None  # None: recorded before fidelities were
    runs: list[SeedRun] = field(default_factory=list)
    failed: list[FailedSeed] = field(default_factory=list)  # seeds that count in no mean
    # the seeds of ``failed`` that failed in this process's verification (not stored: a seed
    # that diverged in an earlier one is a kept result, not a new failure)
    failed_now: list[int] = field(default_factory=list, compare=False)

    @property
    def label(self) -> str:
        return network_label(self.key)

    @property
    def searched(self) -> bool:
        return self.key.startswith("trial-")

    @property
    def store_key(self) -> str:
        return f"{VERIFY_PREFIX}{self.key}@{self.fidelity.id if self.fidelity else '-'}"

    @property
    def fidelity_label(self) -> str:
        if self.fidelity is None:
            return f"{self.runs[0].epochs} ep" if self.runs else "-"
        return self.fidelity.label()

    @property
    def failed_label(self) -> str:
        """``seed 2 failed (TrainingError: ...)``, ``seeds 1, 2 failed (...)``; empty: none."""
        if not self.failed:
            return ""
        seeds = ", ".join(str(f.seed) for f in self.failed)
        s = "s" * (len(self.failed) > 1)
        return f"seed{s} {seeds} failed ({self.failed[-1].error})"

    @property
    def test_mean(self) -> float:
        return statistics.fmean(r.test_acc for r in self.runs)

    @property
    def test_std(self) -> float:
        return statistics.stdev(r.test_acc for r in self.runs) if len(self.runs) > 1 else 0.0

    @property
    def test_min(self) -> float:
        return min(r.test_acc for r in self.runs)

    @property
    def val_mean(self) -> float:
        return statistics.fmean(r.val_acc for r in self.runs)

    @property
    def seconds_per_seed(self) -> float | None:
        """Mean train time of the seeds trained in this run (a seed reused from the results
        cache took none here); None when every seed came from the cache."""
        trained = [r.train_time_s for r in self.runs if not r.cached]
        return statistics.fmean(trained) if trained else None

    def to_dict(self) -> dict:
        return {
            "key": self.key,
            "params": self.params,
            "spec": self.spec,
            "recipe": self.recipe,
            "search_val_acc": self.search_val_acc,
            "fidelity": asdict(self.fidelity) if self.fidelity else None,
            "runs": [asdict(r) for r in self.runs],
            "failed": [asdict(f) for f in self.failed],
        }

    @classmethod
    def from_dict(cls, d: dict) -> Verified:
        fid = d.get("fidelity")
        return cls(
            key=d["key"],
            params=d["params"],
            spec=d["spec"],
            recipe=d["recipe"],
            search_val_acc=d.get("search_val_acc"),
            fidelity=Fidelity(**fid) if fid else None,
            runs=[SeedRun(**{"worker": "", **r}) for r in d["runs"]],
            failed=[FailedSeed(**f) for f in d.get("failed", [])],
        )


def stored_results(study: optuna.Study) -> dict[str, Verified]:
    """Every stored record, by ``store_key``."""
    attrs = study.user_attrs
    records = [Verified.from_dict(v) for k, v in attrs.items() if k.startswith(VERIFY_PREFIX)]
    records += [Verified.from_dict(v) for v in attrs.get(LEGACY_ATTR, {}).values()]
    return {v.store_key: v for v in records}


def store(study: optuna.Study, record: Verified) -> None:
    study.set_user_attr(record.store_key, record.to_dict())


def ladder_rows(
    results: dict[str, Verified], caps: tuple[int, ...]
) -> list[tuple[str, int, Verified]]:
    """Per fidelity and cap, the verified searched network with the best mean *validation*
    accuracy among those verified with the most seeds at that fidelity (a mean of one seed is
    not compared with a mean of three): (fidelity label, cap, record)."""
    rows = []
    searched = [v for v in results.values() if v.searched and v.runs]
    for label in sorted({v.fidelity_label for v in searched}):
        same = [v for v in searched if v.fidelity_label == label]
        for cap in caps:
            under = [v for v in same if v.params <= cap]
            if under:
                most = max(len(v.runs) for v in under)
                peers = [v for v in under if len(v.runs) == most]
                rows.append((label, cap, max(peers, key=lambda v: (v.val_mean, -v.params))))
    return rows


def best_verified(results: dict[str, Verified], cap: int) -> Verified | None:
    """The verified searched network under ``cap`` a user should take: at the highest
    fidelity any searched network was verified at (epochs x images), among those verified
    there with the most seeds, the best mean validation accuracy (ties: fewer parameters)."""
    under = [v for v in results.values() if v.searched and v.runs and v.params <= cap]
    under = [v for v in under if v.fidelity is not None]
    if not under:
        return None
    top = max(v.fidelity.image_epochs for v in under)  # type: ignore[union-attr]
    there = [v for v in under if v.fidelity.image_epochs == top]  # type: ignore[union-attr]
    most = max(len(v.runs) for v in there)
    peers = [v for v in there if len(v.runs) == most]
    return max(peers, key=lambda v: (v.val_mean, -v.params))


def failure_message(results: list[Verified]) -> str | None:
    """One line on the seeds that failed in this verification among ``results`` (None: none
    did; a seed that diverged in an earlier one is a kept result, listed in the tables, not
    a new failure): how many, which, the last error; the rest of the results stand."""
    new = {v.key: [f for f in v.failed if f.seed in v.failed_now] for v in results}
    failed = [v for v in results if new[v.key]]
    if not failed:
        return None
    n = sum(len(new[v.key]) for v in failed)
    total = sum(len(v.failed) + len(v.runs) for v in results)
    which = "; ".join(
        f"{v.label}: seed{'s' * (len(new[v.key]) > 1)} "
        + ", ".join(str(f.seed) for f in new[v.key])
        for v in failed
    )
    return (
        f"{n} of {total} verify seeds failed ({which}); the last: {new[failed[-1].key][-1].error}"
        ". They count in no mean; the other results are stored and reported"
    )
