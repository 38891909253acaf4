"""Retrain chosen architectures with several seeds and report test accuracy mean ± std.

The architectures were chosen on validation by the search; here each is trained again from
scratch on the full training split (the validation images held out, as in the search) with
seeds 0..n-1, and its final-epoch validation and test accuracies are recorded. Seed networks
from the zoo go through the same function, so the comparison uses the same recipe, data and
seeds. Results are stored on the study (user attribute ``verify``) and shown in the report.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import optuna
from optuna.trial import TrialState

from budgetnas.reports.frame import trials_frame
from budgetnas.reports.pareto import pareto_front
from budgetnas.search.errors import SearchError
from budgetnas.search.export import pick_trial
from budgetnas.search.run import SearchConfig, open_run, trial_spec
from budgetnas.space.count import count_params
from budgetnas.space.spec import ArchSpec
from budgetnas.space.zoo import ZOO
from budgetnas.trainers.data import load_test, load_train_val
from budgetnas.trainers.train import TrainConfig, evaluate, resolve_device, train

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


def _choose(
    cfg: SearchConfig,
    study: optuna.Study,
    *,
    trials: list[int] | None,
    top: int | None,
    zoo: list[str] | None,
) -> list[Verified]:
    base = cfg.train_config()
    if zoo:
        unknown = [k for k in zoo if k not in ZOO]
        if unknown:
            raise SearchError(f"no zoo entry {unknown[0]!r}; entries: {', '.join(ZOO)}")
        return [
            Verified(
                f"zoo-{k}", count_params(ZOO[k].spec), ZOO[k].spec.to_json(), base.to_dict(), None
            )
            for k in zoo
        ]
    all_trials = study.get_trials(deepcopy=False)
    if trials:
        chosen = [pick_trial(all_trials, n, cap=cfg.budget) for n in trials]
    else:
        df = trials_frame(all_trials)
        if top:
            done = df[(df["state"] == "complete") & df["duplicate_of"].isna()]
            rows = done.sort_values(["val_acc", "params", "number"], ascending=[False, True, True])
            numbers = rows["number"].head(top).tolist()
        else:
            numbers = pareto_front(df, cap=cfg.budget)["number"].tolist()
        if not numbers:
            raise SearchError("the run has no completed trial to verify yet")
        by_number = {t.number: t for t in all_trials}
        chosen = [by_number[int(n)] for n in numbers]
    return [
        Verified(
            f"trial-{t.number}",
            int(t.user_attrs["params"]),
            trial_spec(t).to_json(),
            t.user_attrs.get("recipe") or base.to_dict(),
            float(t.value),
        )
        for t in chosen
        if t.state == TrialState.COMPLETE
    ]


def verify_run(
    run: Path | str,
    *,
    trials: list[int] | None = None,
    top: int | None = None,
    zoo: list[str] | None = None,
    seeds: int = 3,
    epochs: int | None = None,
    device: str = "auto",
    data_dir: Path | str | None = None,
    train_subset: int | None = None,
    on_result: Callable[[Verified, SeedRun], None] | None = None,
) -> list[Verified]:
    """Retrain the chosen architectures with seeds 0..seeds-1; store and return the results."""
    if seeds < 1:
        raise SearchError(f"--seeds must be at least 1, got {seeds}")
    cfg, study = open_run(run)
    chosen = _choose(cfg, study, trials=trials, top=top, zoo=zoo)
    dev = resolve_device(device)
    root = data_dir or cfg.data_dir
    data = load_train_val(
        cfg.dataset,
        data_dir=root,
        val_size=cfg.val_size,
        split_seed=cfg.split_seed,
        train_subset=train_subset,
        device=dev,
        download=cfg.download,
    )
    test = load_test(cfg.dataset, data_dir=root, device=dev)
    store = study.user_attrs.get(VERIFY_ATTR, {})
    for item in chosen:
        recipe = TrainConfig.from_dict(item.recipe)
        if epochs is not None:
            recipe = replace(recipe, epochs=epochs)
        spec = ArchSpec.from_json(item.spec)
        for seed in range(seeds):
            result = train(spec, data, replace(recipe, seed=seed), device=dev)
            run_ = SeedRun(
                seed=seed,
                val_acc=result.val_acc,
                test_acc=evaluate(result.model, test),
                epochs=recipe.epochs,
                train_time_s=round(result.train_time_s, 3),
                device=result.device,
            )
            item.runs.append(run_)
            if on_result is not None:
                on_result(item, run_)
        store[item.key] = item.to_dict()
        study.set_user_attr(VERIFY_ATTR, store)  # saved after each architecture
    return chosen


def ladder_rows(results: dict[str, Verified], caps: tuple[int, ...]) -> list[tuple[int, Verified]]:
    """Per cap, the verified searched network with the best mean *validation* accuracy."""
    rows = []
    searched = [v for k, v in results.items() if k.startswith("trial-") and v.runs]
    for cap in caps:
        under = [v for v in searched if v.params <= cap]
        if under:
            rows.append((cap, max(under, key=lambda v: (v.val_mean, -v.params))))
    return rows
