"""Retrain chosen architectures with several seeds and report test accuracy mean ± std.

The architectures were chosen on validation by the search; here each is trained again from
scratch on the full training split (the validation images held out, as in the search) with
seeds the search did not use (0, 1, 2, ... without the seed the search trained with), so no
verified run repeats the selected run, and its final-epoch validation and test accuracies are
recorded. The fidelity may differ from the search's (search cheap, verify in full: more
epochs, another recipe setting, all training images); it is recorded with every result, and
each seed's weights are kept in the run (``weights/verify/``) so that ``export`` can ship the
best weights that exist. Seed
networks from the zoo go through the same function, so the comparison uses the same recipe,
data and seeds. Results are stored on the study and shown in the report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from budgetnas.reports.frame import trials_frame
from budgetnas.reports.pareto import pareto_front, top_rung
from budgetnas.search.cache import ResultCache, cached_train
from budgetnas.search.config import (
    RECIPE_OPTIONS,
    SearchConfig,
    changed_reference,
    same_network,
)
from budgetnas.search.errors import SearchError
from budgetnas.search.export import pick_trial
from budgetnas.search.runs import WEIGHTS_DIR, accuracy, open_run, trial_spec
from budgetnas.search.teacher import attach_teacher
from budgetnas.search.verified import (
    FailedSeed,
    Fidelity,
    SeedRun,
    Verified,
    store,
    stored_results,
)
from budgetnas.space.count import count_params
from budgetnas.space.spec import ArchSpec
from budgetnas.space.zoo import ZOO
from budgetnas.trainers.evaluate import device_name, evaluate, resolve_device
from budgetnas.trainers.recipe import AugmentConfig, TrainConfig
from budgetnas.trainers.train import TrainingError, train

VERIFY_WEIGHTS = f"{WEIGHTS_DIR}/verify"  # in the run folder: one file per network, fidelity, seed
# a seed's training that fails in one of these ways is recorded as failed, and the rest go on
SEED_FAILURES = (TrainingError, torch.cuda.OutOfMemoryError)


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
        chosen = [pick_trial(all_trials, n, cap=cfg.budget) for n in trials]
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
            numbers = pareto_front(df, cap=cfg.budget)["number"].tolist()
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
    if "augment" in given:
        given["augment"] = AugmentConfig.scaled(float(given["augment"]))
    return replace(base, **given)


def verify_run(
    run: Path | str,
    *,
    trials: list[int] | None = None,
    top: int | None = None,
    zoo: list[str] | None = None,
    seeds: int = 3,
    device: str = "auto",
    data_dir: Path | str | None = None,
    train_subset: int | None = None,
    on_result: Callable[[Verified, SeedRun], None] | None = None,
    on_failed: Callable[[Verified, FailedSeed], None] | None = None,
    cache: ResultCache | None = None,
    **recipe: Any,
) -> list[Verified]:
    """Retrain the chosen architectures with ``seeds`` seeds the search did not use, at the
    fidelity given (``recipe``: epochs, batch_size, lr, augment, label_smoothing; default: the
    searched recipe) on the full training split (or ``train_subset`` images); store and
    return the results.

    Each seed's result is stored as soon as it is known, so an interrupted verification
    continues where it stopped: seeds already verified at the same fidelity are not trained
    again. ``cache``: finished trainings shared with other runs (``search.cache``); a seed
    found there is not trained either (its run says ``cached``).

    A seed whose training fails (its loss became NaN, the device ran out of memory) is
    recorded in the network's ``failed`` (``on_failed`` hears of it), counts in no mean, and
    the other seeds and networks go on. A diverged seed is not trained again at the same
    fidelity (it would diverge again); one that ran out of memory is, by a later verify.
    """
    if seeds < 1:
        raise SearchError(f"--seeds must be at least 1, got {seeds}")
    if top is not None and top < 1:
        raise SearchError(f"--top must be at least 1, got {top}")
    verifier = Verifier(
        run, device=device, data_dir=data_dir, train_subset=train_subset, cache=cache, **recipe
    )
    chosen = _choose(verifier.cfg, verifier.study, trials=trials, top=top, zoo=zoo)
    _check_zoo_trials(verifier.study, chosen)
    stored = stored_results(verifier.study)
    for item in chosen:  # every one before anything trains
        _, fitted = verifier.fitted(item)
        _check_record(fitted, stored.get(fitted.store_key))
    return [
        verifier.seeds(item, seeds, on_result=on_result, on_failed=on_failed) for item in chosen
    ]


class Verifier:
    """A run's verification with its data loaded once: ``seeds(item, n)`` trains the seeds
    of one network that the run does not hold yet, up to ``n`` (see ``verify_run``)."""

    def __init__(
        self,
        run: Path | str,
        *,
        device: str = "auto",
        data_dir: Path | str | None = None,
        train_subset: int | None = None,
        cache: ResultCache | None = None,
        **recipe: Any,
    ) -> None:
        unknown = set(recipe) - set(RECIPE_OPTIONS)
        if unknown:
            raise TypeError(f"unknown recipe setting(s): {', '.join(sorted(unknown))}")
        self.run, self.recipe, self.cache = Path(run), recipe, cache
        self.cfg, self.study = open_run(run)
        self.device = resolve_device(device)
        data_cfg = replace(
            self.cfg.data,
            train_subset=train_subset,
            data_dir=str(data_dir) if data_dir is not None else self.cfg.data.data_dir,
        )
        self.data = attach_teacher(data_cfg.load(self.device), self.cfg.recipe, self.run)
        self.test = data_cfg.load_test(self.device)

    def fitted(self, item: Verified) -> tuple[TrainConfig, Verified]:
        """The recipe ``item`` is verified with (its searched one with the overrides), and
        ``item`` with that fidelity."""
        searched = TrainConfig.from_dict(item.recipe)
        fitted = verify_recipe(searched, **self.recipe)
        fidelity = {k: v for k, v in fitted.to_dict().items() if k != "seed"}
        return fitted, replace(
            item, fidelity=Fidelity(fitted.epochs, len(self.data.train), fidelity)
        )

    def seeds(
        self,
        item: Verified,
        n: int,
        *,
        on_result: Callable[[Verified, SeedRun], None] | None = None,
        on_failed: Callable[[Verified, FailedSeed], None] | None = None,
    ) -> Verified:
        """``item`` verified with the first ``n`` seeds other than its search's, training
        those the run does not hold at this fidelity; stored after each seed."""
        fitted, item = self.fitted(item)
        study, dev = self.study, self.device
        earlier = stored_results(study).get(item.store_key)
        _check_record(item, earlier)
        runs = {r.seed: r for r in (earlier.runs if earlier else [])}
        failed = {f.seed: f for f in (earlier.failed if earlier else [])}
        item.runs = sorted(runs.values(), key=lambda r: r.seed)  # what a store keeps
        item.failed = sorted(failed.values(), key=lambda f: f.seed)
        spec = ArchSpec.from_json(item.spec)
        searched_seed = TrainConfig.from_dict(item.recipe).seed
        for seed in verify_seeds(n, used=searched_seed):
            if seed in failed and not failed[seed].retry:
                if on_failed is not None:
                    on_failed(item, failed[seed])
                continue
            if seed not in runs:
                try:
                    result, reused = cached_train(
                        self.cache,
                        spec,
                        self.data,
                        replace(fitted, seed=seed),
                        device=dev,
                        fit=train,
                    )
                except SEED_FAILURES as err:
                    failed[seed] = FailedSeed(
                        seed=seed,
                        error=f"{type(err).__name__}: {err}",
                        device=device_name(dev),
                        diverged=isinstance(err, TrainingError),
                    )
                    item.failed = sorted(failed.values(), key=lambda f: f.seed)
                    item.failed_now.append(seed)
                    store(study, item)
                    if on_failed is not None:
                        on_failed(item, failed[seed])
                    continue
                failed.pop(seed, None)  # a retried seed that trained this time
                weights = Path(VERIFY_WEIGHTS) / f"{item.key}@{item.fidelity.id}-seed{seed}.pt"
                (self.run / weights).parent.mkdir(parents=True, exist_ok=True)
                state = {k: v.cpu() for k, v in result.model.state_dict().items()}
                torch.save(state, self.run / weights)
                runs[seed] = SeedRun(
                    seed=seed,
                    val_acc=result.val_acc,
                    test_acc=evaluate(result.model, self.test),
                    epochs=fitted.epochs,
                    train_time_s=round(result.train_time_s, 3),
                    device=result.device,
                    weights=weights.as_posix(),
                    cached=reused,
                )
                item.runs = sorted(runs.values(), key=lambda r: r.seed)
                item.failed = sorted(failed.values(), key=lambda f: f.seed)
                store(study, item)  # saved after each seed
            if on_result is not None:
                on_result(item, runs[seed])
        item.runs = sorted(runs.values(), key=lambda r: r.seed)
        item.failed = sorted(failed.values(), key=lambda f: f.seed)
        return item
