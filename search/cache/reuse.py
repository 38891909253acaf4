"""A training through the results cache: trained and written, or its result reused (its curve
replayed through the pruner's callback, its weights loaded)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from budgetnas.search.cache.keys import device_kind
from budgetnas.search.cache.store import ResultCache
from budgetnas.space.spec import ArchSpec
from budgetnas.trainers.data import TrainVal
from budgetnas.trainers.recipe import TrainConfig
from budgetnas.trainers.train import TrainResult, init_model, train


def cached_train(
    cache: ResultCache | None,
    spec: ArchSpec,
    data: TrainVal,
    recipe: TrainConfig,
    *,
    device: torch.device | str,
    on_epoch: Callable[[int, float, float], None] | None = None,
    on_reuse: Callable[[], None] | None = None,
    fit: Callable[..., TrainResult] = train,
) -> tuple[TrainResult, bool]:
    """``fit(spec, data, recipe)`` (``trainers.train``), or its result from ``cache`` when the
    same training finished before: (result, whether it was reused). A reused result replays
    its curve through ``on_epoch`` (a pruner decides on it as on a training; ``on_reuse`` is
    called first) and holds the cached weights. A finished training is written to the cache;
    one that ``on_epoch`` stopped (pruned) is not."""
    device = torch.device(device)
    found = cache_lookup(
        cache, spec, data, recipe, device=device, on_epoch=on_epoch, on_reuse=on_reuse
    )
    if found.result is not None:
        return found.result, True
    result = fit(spec, data, recipe, device=device, on_epoch=on_epoch)
    found.store(result)
    return result, False


@dataclass(frozen=True)
class Lookup:
    """What the cache holds of a training: its ``result`` (None: train it, then ``store``
    what it gives)."""

    cache: ResultCache | None
    key: str | None
    train_images: int
    result: TrainResult | None = None

    def store(self, result: TrainResult) -> None:
        """Write a finished training to the cache (nothing without one)."""
        if self.cache is not None and self.key is not None:
            self.cache.put(
                self.key, _result_dict(result, self.train_images), result.model.state_dict()
            )


def cache_lookup(
    cache: ResultCache | None,
    spec: ArchSpec,
    data: TrainVal,
    recipe: TrainConfig,
    *,
    device: torch.device | str,
    on_epoch: Callable[[int, float, float], None] | None = None,
    on_reuse: Callable[[], None] | None = None,
) -> Lookup:
    """The first half of ``cached_train``, for a caller that trains elsewhere (several
    trainings at once): a cached result, its curve replayed through ``on_epoch`` (which may
    raise, as a pruner does), or what to ``store`` the training's result with."""
    device = torch.device(device)
    if cache is None:
        return Lookup(None, None, len(data.train))
    key = cache.key(spec, data, recipe, device=device)
    entry = cache.get(key)
    if entry is not None:
        model = init_model(spec, seed=recipe.seed, device=torch.device("cpu"))
        try:
            model.load_state_dict(entry.state)
        except (RuntimeError, KeyError):  # weights of another shape: damaged, trained again
            entry = None
    if entry is None:
        return Lookup(cache, key, len(data.train))
    if on_reuse is not None:
        on_reuse()
    r = entry.result
    val_curve = [float(a) for a in r["val_curve"]]
    loss_curve = [float(x) for x in r["loss_curve"]]
    if on_epoch is not None:
        for epoch, (acc, loss) in enumerate(zip(val_curve, loss_curve, strict=True)):
            on_epoch(epoch, acc, loss)
    result = TrainResult(
        model=model.to(device),
        val_curve=val_curve,
        loss_curve=loss_curve,
        train_time_s=float(r.get("train_time_s") or 0.0),
        device=str(r.get("device") or device_kind(device)),
    )
    return Lookup(cache, key, len(data.train), result)


def _result_dict(result: TrainResult, train_images: int) -> dict[str, Any]:
    return {
        "val_curve": list(result.val_curve),
        "loss_curve": list(result.loss_curve),
        "val_acc": result.val_acc,
        "train_time_s": result.train_time_s,
        "device": result.device,
        "train_images": train_images,
    }
