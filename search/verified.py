"""Verification results as stored on a study: read without training anything.

``budgetnas verify`` (``search.verify``) retrains chosen architectures and stores one
``Verified`` record per architecture in the study's ``verify`` user attribute; reports read
them back from here.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field

import optuna

VERIFY_ATTR = "verify"


@dataclass(frozen=True)
class SeedRun:
    seed: int
    val_acc: float
    test_acc: float
    epochs: int
    train_time_s: float
    device: str


@dataclass
class Verified:
    key: str  # "trial-12" or "zoo-001"
    params: int
    spec: str
    recipe: dict
    search_val_acc: float | None
    runs: list[SeedRun] = field(default_factory=list)

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

    def to_dict(self) -> dict:
        return {
            "key": self.key,
            "params": self.params,
            "spec": self.spec,
            "recipe": self.recipe,
            "search_val_acc": self.search_val_acc,
            "runs": [asdict(r) for r in self.runs],
        }

    @classmethod
    def from_dict(cls, d: dict) -> Verified:
        return cls(
            key=d["key"],
            params=d["params"],
            spec=d["spec"],
            recipe=d["recipe"],
            search_val_acc=d.get("search_val_acc"),
            runs=[SeedRun(**r) for r in d["runs"]],
        )


def stored_results(study: optuna.Study) -> dict[str, Verified]:
    return {k: Verified.from_dict(v) for k, v in study.user_attrs.get(VERIFY_ATTR, {}).items()}


def ladder_rows(results: dict[str, Verified], caps: tuple[int, ...]) -> list[tuple[int, Verified]]:
    """Per cap, the verified searched network with the best mean *validation* accuracy."""
    rows = []
    searched = [v for k, v in results.items() if k.startswith("trial-") and v.runs]
    for cap in caps:
        under = [v for v in searched if v.params <= cap]
        if under:
            rows.append((cap, max(under, key=lambda v: (v.val_mean, -v.params))))
    return rows
