"""Training recipes: the defaults per epoch budget, and the recipe as part of the search.

With ``--search-recipe`` a trial also samples its learning rate, label smoothing, dropout and
augmentation strength; the epoch budget stays the user's. The sampled recipe is stored on the
trial, so ``verify`` retrains with exactly the recipe that was selected.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from budgetnas.trainers.augment import AugmentConfig
from budgetnas.trainers.train import TrainConfig

DEFAULT_AUGMENT = AugmentConfig()


@dataclass(frozen=True)
class RecipeDefaults:
    batch_size: int
    lr: float
    augment: float  # strength, see ``scaled_augment``


# Chosen on the validation split; see the README ("One-epoch recipe").
MULTI_EPOCH = RecipeDefaults(batch_size=128, lr=0.05, augment=1.0)
ONE_EPOCH = RecipeDefaults(batch_size=64, lr=0.1, augment=0.0)


def recipe_defaults(epochs: int) -> RecipeDefaults:
    """The default batch size, learning rate and augmentation for an epoch budget."""
    return ONE_EPOCH if epochs == 1 else MULTI_EPOCH


def scaled_augment(strength: float) -> AugmentConfig:
    """The default augmentation times ``strength`` (0 = none)."""
    return AugmentConfig(
        degrees=DEFAULT_AUGMENT.degrees * strength,
        translate=DEFAULT_AUGMENT.translate * strength,
        scale=DEFAULT_AUGMENT.scale * strength,
    )


def sample_recipe(trial, base: TrainConfig) -> tuple[TrainConfig, float]:
    """(training config, dropout) for this trial, around ``base``."""
    lr = trial.suggest_float("lr", base.lr / 4, base.lr * 4, log=True)
    smoothing = trial.suggest_float("label_smoothing", 0.0, 0.15)
    strength = trial.suggest_float("augment", 0.0, 1.5)
    dropout = trial.suggest_float("dropout", 0.0, 0.15)
    return replace(
        base, lr=lr, label_smoothing=smoothing, augment=scaled_augment(strength)
    ), dropout
