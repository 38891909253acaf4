"""Retrain chosen architectures with several seeds and report test accuracy mean ± std.

The architectures were chosen on validation by the search; here each is trained again from
scratch on the full training split (the validation images held out, as in the search) with
seeds the search did not use (0, 1, 2, ... without the seed the search trained with), so no
verified run repeats the selected run, and its final-epoch validation and test accuracies are
recorded. Seed networks
from the zoo go through the same function, so the comparison uses the same recipe, data and
seeds. Results are stored on the study (user attribute ``verify``) and shown in the report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import optuna
from optuna.trial import TrialState

from budgetnas.reports.frame import trials_frame
from budgetnas.reports.pareto import pareto_front
from budgetnas.search.config import SearchConfig
from budgetnas.search.errors import SearchError
from budgetnas.search.export import pick_trial
from budgetnas.search.runs import accuracy, open_run, trial_spec
from budgetnas.search.verified import VERIFY_ATTR, SeedRun, Verified
from budgetnas.space.count import count_params
from budgetnas.space.spec import ArchSpec
from budgetnas.space.zoo import ZOO
from budgetnas.trainers.evaluate import evaluate, resolve_device
from budgetnas.trainers.recipe import TrainConfig
from budgetnas.trainers.train import train


def verify_seeds(n: int, used: int) -> list[int]:
    """The first ``n`` seeds other than ``used``, the one the search trained with."""
    return [s for s in range(n + 1) if s != used][:n]


def _choose(
    cfg: SearchConfig,
    study: optuna.Study,
    *,
    trials: list[int] | None,
    top: int | None,
    zoo: list[str] | None,
) -> list[Verified]:
    base = cfg.recipe
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
            f"zoo-{t.user_attrs['reference']}"
            if t.user_attrs.get("reference")
            else f"trial-{t.number}",
            int(t.user_attrs["params"]),
            trial_spec(t).to_json(),
            t.user_attrs.get("recipe") or base.to_dict(),
            accuracy(t),
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
    """Retrain the chosen architectures with ``seeds`` seeds the search did not use; store and
    return the results."""
    if seeds < 1:
        raise SearchError(f"--seeds must be at least 1, got {seeds}")
    cfg, study = open_run(run)
    chosen = _choose(cfg, study, trials=trials, top=top, zoo=zoo)
    dev = resolve_device(device)
    data_cfg = replace(
        cfg.data,
        train_subset=train_subset,
        data_dir=str(data_dir) if data_dir is not None else cfg.data.data_dir,
    )
    data = data_cfg.load(dev)
    test = data_cfg.load_test(dev)
    store = study.user_attrs.get(VERIFY_ATTR, {})
    for item in chosen:
        recipe = TrainConfig.from_dict(item.recipe)
        if epochs is not None:
            recipe = replace(recipe, epochs=epochs)
        spec = ArchSpec.from_json(item.spec)
        for seed in verify_seeds(seeds, used=recipe.seed):
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
