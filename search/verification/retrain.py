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

import torch

from budgetnas.search.cache.reuse import cached_train
from budgetnas.search.cache.store import ResultCache
from budgetnas.search.errors import SearchError
from budgetnas.search.schedule.trials import verify_seeds
from budgetnas.search.study.options import RECIPE_OPTIONS
from budgetnas.search.study.runs import WEIGHTS_DIR, open_run
from budgetnas.search.study.teacher import attach_teacher
from budgetnas.search.verification.choose import (
    _check_record,
    _check_zoo_trials,
    _choose,
    verify_recipe,
)
from budgetnas.search.verification.records import (
    FailedSeed,
    Fidelity,
    SeedRun,
    Verified,
    store,
    stored_results,
)
from budgetnas.space.spec import ArchSpec
from budgetnas.trainers.evaluate import device_name, evaluate, resolve_device
from budgetnas.trainers.fused import FuseError, check_fusable, fuse_seeds_by_default, train_fused
from budgetnas.trainers.precision import recipe_settings
from budgetnas.trainers.recipe import TrainConfig
from budgetnas.trainers.train import TrainingError, TrainResult, train

VERIFY_WEIGHTS = f"{WEIGHTS_DIR}/verify"  # in the run folder: one file per network, fidelity, seed
# a seed's training that fails in one of these ways is recorded as failed, and the rest go on
SEED_FAILURES = (TrainingError, torch.cuda.OutOfMemoryError)


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
    precision: str | None = None,
    fuse_seeds: bool | None = None,
    **recipe: Any,
) -> list[Verified]:
    """Retrain the chosen architectures with ``seeds`` seeds the search did not use, at the
    fidelity given (``recipe``: epochs, batch_size, lr, augment, label_smoothing; default: the
    searched recipe) on the full training split (or ``train_subset`` images); store and
    return the results. ``precision`` (auto, fp32, bf16, as ``search --precision`` on this
    device; default: each network's searched precision) sets the recipe's precision and
    memory order: it is part of the fidelity, so results at two precisions are two records.

    Each seed's result is stored as soon as it is known, so an interrupted verification
    continues where it stopped: seeds already verified at the same fidelity are not trained
    again. ``cache``: finished trainings shared with other runs (``search.cache``); a seed
    found there is not trained either (its run says ``cached``).

    A seed whose training fails (its loss became NaN, the device ran out of memory) is
    recorded in the network's ``failed`` (``on_failed`` hears of it), counts in no mean, and
    the other seeds and networks go on. A diverged seed is not trained again at the same
    fidelity (it would diverge again); one that ran out of memory is, by a later verify.

    ``fuse_seeds``: a network's seeds still to train are trained at once as one fused model
    (``trainers.fused``; None: by the device's default, on for CUDA). Each seed's result is
    its separate training's up to float rounding, so fused trainings are neither read from
    nor written to the results cache; a network that cannot be fused trains seed by seed.
    """
    if seeds < 1:
        raise SearchError(f"--seeds must be at least 1, got {seeds}")
    if top is not None and top < 1:
        raise SearchError(f"--top must be at least 1, got {top}")
    verifier = Verifier(
        run,
        device=device,
        data_dir=data_dir,
        train_subset=train_subset,
        cache=cache,
        precision=precision,
        **recipe,
    )
    verifier.fuse = fuse_seeds_by_default(verifier.device) if fuse_seeds is None else fuse_seeds
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
        precision: str | None = None,
        **recipe: Any,
    ) -> None:
        unknown = set(recipe) - set(RECIPE_OPTIONS)
        if unknown:
            raise TypeError(f"unknown recipe setting(s): {', '.join(sorted(unknown))}")
        self.run, self.recipe, self.cache = Path(run), recipe, cache
        self.fuse = False  # a network's missing seeds as one fused model (verify --fuse-seeds)
        self.device = resolve_device(device)
        # --precision: before the run is read (a bad value changes nothing)
        self.settings = recipe_settings(precision, self.device) if precision is not None else {}
        self.cfg, self.study = open_run(run)
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
        fitted = replace(verify_recipe(searched, **self.recipe), **self.settings)
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
        wanted = verify_seeds(n, used=searched_seed)
        todo = [s for s in wanted if s not in runs and (s not in failed or failed[s].retry)]
        fused = self._fused(spec, fitted, todo) if self.fuse and len(todo) > 1 else {}
        for seed in wanted:
            if seed in failed and not failed[seed].retry:
                if on_failed is not None:
                    on_failed(item, failed[seed])
                continue
            if seed not in runs:
                try:
                    if seed in fused:
                        result, reused = _result(fused[seed]), False
                    else:
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

    def _fused(
        self, spec: ArchSpec, fitted: TrainConfig, seeds: list[int]
    ) -> dict[int, TrainResult | TrainingError]:
        """Per seed, its training as one copy of a fused model (``trainers.fused``); empty
        where the network cannot be fused or the fused training failed as a whole (out of
        memory): its seeds then train one by one."""
        try:
            check_fusable(spec)
            results = train_fused(spec, self.data, fitted, seeds=seeds, device=self.device)
        except (FuseError, *SEED_FAILURES):
            return {}
        return dict(zip(seeds, results, strict=True))


def _result(outcome: TrainResult | TrainingError) -> TrainResult:
    """A fused copy's result, or its failure raised as a separate training's would be."""
    if isinstance(outcome, Exception):
        raise outcome
    return outcome
