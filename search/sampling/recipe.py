"""The training recipe as part of the search (``--search-recipe``).

A trial then also samples its learning rate, label smoothing, dropout and augmentation
strength around the run's recipe; the epoch budget stays the user's. The sampled recipe is
stored on the trial, so ``verify`` retrains with exactly the recipe that was selected.
"""

from __future__ import annotations

from dataclasses import replace

from budgetnas.trainers.recipe import AugmentConfig, TrainConfig


def sample_recipe(trial, base: TrainConfig) -> tuple[TrainConfig, float]:
    """(training config, dropout) for this trial, around ``base``."""
    lr = trial.suggest_float("lr", base.lr / 4, base.lr * 4, log=True)
    smoothing = trial.suggest_float("label_smoothing", 0.0, 0.15)
    strength = trial.suggest_float("augment", 0.0, 1.5)
    dropout = trial.suggest_float("dropout", 0.0, 0.15)
    augment = AugmentConfig.scaled(strength)
    return replace(base, lr=lr, label_smoothing=smoothing, augment=augment), dropout
