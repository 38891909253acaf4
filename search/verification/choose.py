"""Which networks a verification retrains, and with which recipe and seeds: read from the
run, nothing trained (so that reading a run's race, its reports and its export import no
training code). ``search.verify`` trains them."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import optuna
from optuna.trial import TrialState

from budgetnas.reports.front.frame import trials_frame
from budgetnas.reports.front.pareto import pareto_front, top_rung
from budgetnas.search.errors import SearchError
from budgetnas.search.study.config import SearchConfig
from budgetnas.search.study.opening import changed_reference, same_network
from budgetnas.search.study.runs import accuracy, pick_trial, trial_spec
from budgetnas.search.verification.records import Verified
from budgetnas.space.count import count_params
from budgetnas.space.spec import ArchSpec
from budgetnas.space.zoo import ZOO
from budgetnas.trainers.recipe import AugmentConfig, TrainConfig, check_momentum


def _choose(
    cfg: SearchConfig,
    study: optuna.Study,
    *,
    trials: list[int] | None,
    top: int | None,
    zoo: list[str] | None,
) -> list[Verified]:
    """The networks to retrain: the zoo entries asked for, plus the trials asked for (by
    number, or the ``top`` K searched trials by validation), or the searched Pareto front
    when neither is. A reference network is verified only when asked for, by ``zoo`` or by its
    trial number."""
    base = cfg.recipe
    unknown = [k for k in zoo or () if k not in ZOO]
    if unknown:
        raise SearchError(f"no zoo entry {unknown[0]!r}; entries: {', '.join(ZOO)}")
    zoo_items = [
        Verified(f"zoo-{k}", count_params(spec), spec.to_json(), base.to_dict(), None)
        for k, spec in ((k, zoo_spec(cfg, k)) for k in zoo or ())
    ]
    if zoo and not trials and not top:
        return zoo_items
    all_trials = study.get_trials(deepcopy=False)
    if trials:
        chosen = [pick_trial(all_trials, n, cap=cfg.cap) for n in trials]
    else:
        df = trials_frame(all_trials)
        if top:
            done = df[
                (df["state"] == "complete") & df["duplicate_of"].isna() & df["reference"].isna()
            ]
            done = done[done["rung"] == top_rung(df)]  # accuracies at one fidelity
            rows = done.sort_values(["val_acc", "params", "number"], ascending=[False, True, True])
            numbers = rows["number"].head(top).tolist()
        else:
            numbers = pareto_front(df, cap=cfg.cap)["number"].tolist()
        if not numbers:
            raise SearchError("the run has no completed trial to verify yet")
        by_number = {t.number: t for t in all_trials}
        chosen = [by_number[int(n)] for n in numbers]
    picked = [
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
    keys = {v.key for v in picked}
    return picked + [v for v in zoo_items if v.key not in keys]


def _check_zoo_trials(study: optuna.Study, chosen: list[Verified]) -> None:
    """Refuse, in one line, to verify a zoo network whose reference trials in the run hold
    another network under its key (it changed since the run trained it): one run, one
    network per name."""
    trials = study.get_trials(deepcopy=False)
    for item in chosen:
        if item.searched:
            continue
        key = item.key.removeprefix("zoo-")
        trial = changed_reference(trials, key, ArchSpec.from_json(item.spec))
        if trial is not None:
            raise SearchError(
                f"seed {key} has changed since this run trained it: trial {trial.number} holds "
                f"another network under that key than seed {key} is now; verify the new one "
                f"in a new search (`verify --trial {trial.number}` verifies the one this run "
                "trained)"
            )


def _check_record(item: Verified, earlier: Verified | None) -> None:
    """Refuse, in one line, to add seeds of ``item`` to a stored record of another network
    under its key and fidelity (a zoo network that changed since it was verified): their
    seeds would mix in one mean."""
    if earlier is not None and not same_network(earlier.spec, ArchSpec.from_json(item.spec)):
        raise SearchError(
            f"{item.label} has changed since this run verified it: its record at "
            f"{item.fidelity_label} holds another network than {item.label} is now, and their "
            "seeds cannot be mixed in one mean; verify the new one in a new search"
        )


def zoo_spec(cfg: SearchConfig, key: str) -> ArchSpec:
    """Zoo network ``key`` for the run's data: its images' normalisation (as the references
    inside the study have), refused when its input shape or classes do not fit."""
    spec, space = ZOO[key].spec, cfg.space_config
    shape = (spec.in_channels, spec.input_size, spec.num_classes)
    if shape != (space.in_channels, space.input_size, space.num_classes):
        raise SearchError(
            f"seed {key} takes {spec.in_channels}x{spec.input_size}x{spec.input_size} images "
            f"and {spec.num_classes} classes; the run's data have {space.in_channels}x"
            f"{space.input_size}x{space.input_size} and {space.num_classes}"
        )
    return replace(spec, norm=space.norm)


def verify_recipe(base: TrainConfig, **overrides: Any) -> TrainConfig:
    """``base`` with the recipe settings given to ``verify`` (``None``: not given).
    ``augment`` is a strength, as for ``search``."""
    given = {k: v for k, v in overrides.items() if v is not None}
    check_momentum(given.get("optimizer", base.optimizer), given)
    if "augment" in given:
        given["augment"] = AugmentConfig.scaled(float(given["augment"]))
    return replace(base, **given)
