"""The training recipe: one validated, frozen config, and its defaults per epoch budget.

Nothing here imports torch, so a run's recipe can be read, compared and printed (reports,
export, fingerprints) without the training stack.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("onecycle", "constant")
PRECISIONS = ("fp32", "bf16")  # bf16: the forward pass and loss under bf16 autocast
# Settings added after results were first stored: kept out of a recipe's dict while at their
# default, so the results, cache keys and study fingerprints of earlier versions stay valid.
LATER_DEFAULTS: dict[str, Any] = {
    "precision": "fp32",
    "channels_last": False,
    "ema": 0.0,
    "beta1": 0.9,
    "distill": 0.0,
    "temperature": 4.0,
    "teacher": None,
}
MAX_AUGMENT_STRENGTH = 3.0
ADAMW_BETA1 = 0.9  # torch's default: a recipe at it trains as before the setting existed


class ConfigError(ValueError):
    """A training setting or device that cannot be used; the message says which."""


@dataclass(frozen=True)
class AugmentConfig:
    """Random affine augmentation, drawn per image on the device."""

    degrees: float = 10.0  # rotation drawn from [-degrees, degrees]
    translate: float = 0.1  # shift drawn from [-translate, translate] x image size, per axis
    scale: float = 0.1  # zoom factor drawn from [1 - scale, 1 + scale]

    def __post_init__(self) -> None:
        for name in ("degrees", "translate", "scale"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"augmentation {name} must be a number >= 0, got {value!r}")

    @property
    def enabled(self) -> bool:
        return bool(self.degrees or self.translate or self.scale)

    @classmethod
    def scaled(cls, strength: float) -> AugmentConfig:
        """The default augmentation times ``strength``: 1 = rotation ±10°, shift ±10%,
        scale ±10%; 0 = none."""
        if not 0 <= strength <= MAX_AUGMENT_STRENGTH:
            raise ConfigError(
                f"augmentation strength must be between 0 and {MAX_AUGMENT_STRENGTH:g}, "
                f"got {strength}"
            )
        base = cls()
        return cls(base.degrees * strength, base.translate * strength, base.scale * strength)


NO_AUGMENT = AugmentConfig(0.0, 0.0, 0.0)


@dataclass(frozen=True)
class TrainConfig:
    """How one network is trained: everything that, with the spec and the data, fixes the
    result (on a CPU, to the bit for one torch intra-op thread count and instruction set)."""

    epochs: int = 15
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.05  # the peak learning rate under OneCycle (which cycles the rate only)
    momentum: float = 0.9  # SGD's (Nesterov) momentum, constant; AdamW has its betas
    weight_decay: float = 5e-4  # SGD's L2 penalty, AdamW's decoupled decay
    label_smoothing: float = 0.0
    schedule: str = "onecycle"
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    eval_batch_size: int = 2000
    seed: int = 0
    precision: str = "fp32"
    channels_last: bool = False  # the network and its batches in NHWC memory order
    # the weights returned (validated, cached, verified, exported) are an exponential moving
    # average of the trained ones with this decay per optimizer step (trainers.ema); 0: off
    ema: float = 0.0
    beta1: float = ADAMW_BETA1  # AdamW's first-moment decay (its momentum); AdamW only
    # distillation (trainers.distill): the loss is (1 - distill) x cross-entropy + distill x
    # temperature^2 x KL(teacher || student), both softened by the temperature; 0: off
    distill: float = 0.0
    temperature: float = 4.0
    # the teacher's identity: the sha256 of its soft targets on the training images
    # (trainers.distill.targets_id), so that another teacher is another result
    teacher: str | None = None

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {self.batch_size}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)}")
        if not self.lr > 0:
            raise ConfigError(f"learning rate must be positive, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"momentum must be in [0, 1), got {self.momentum}")
        if not 0 <= self.weight_decay < 1:
            raise ConfigError(f"weight decay must be in [0, 1), got {self.weight_decay}")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"label smoothing must be in [0, 1), got {self.label_smoothing}")
        if not isinstance(self.augment, AugmentConfig):
            raise ConfigError(f"augment must be an AugmentConfig, got {self.augment!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}")
        self._check_later_settings()

    def _check_later_settings(self) -> None:
        """EMA, AdamW's beta1 and distillation: each a number in its range, and nothing set
        that the rest of the recipe would ignore."""
        for name, low, high, closed in (
            ("ema", 0.0, 1.0, False),
            ("beta1", 0.0, 1.0, False),
            ("distill", 0.0, 1.0, True),
        ):
            value = getattr(self, name)
            inside = isinstance(value, (int, float)) and not isinstance(value, bool)
            inside = inside and low <= value and (value <= high if closed else value < high)
            if not inside:
                bracket = "]" if closed else ")"
                raise ConfigError(
                    f"{name} must be a number in [{low:g}, {high:g}{bracket}, got {value!r}"
                )
        if self.optimizer != "adamw" and self.beta1 != ADAMW_BETA1:
            raise ConfigError(
                f"beta1 is AdamW's (--optimizer adamw); {self.optimizer} has its momentum "
                "(--momentum): use one or the other"
            )
        if isinstance(self.temperature, bool) or not (
            isinstance(self.temperature, (int, float)) and self.temperature > 0
        ):
            raise ConfigError(
                f"distillation temperature must be positive, got {self.temperature!r}"
            )
        teacher = self.teacher
        if teacher is not None and (
            not isinstance(teacher, str)
            or len(teacher) != 64
            or any(c not in "0123456789abcdef" for c in teacher)
        ):
            raise ConfigError(
                f"teacher must be the sha256 (64 hex digits) of a teacher's soft targets, got "
                f"{teacher!r}"
            )
        if self.distill > 0 and teacher is None:
            raise ConfigError(
                "distillation (distill > 0) needs a teacher: give its identity (budgetnas "
                "search --teacher auto or PATH), or set distill to 0"
            )
        if self.distill == 0 and self.temperature != LATER_DEFAULTS["temperature"]:
            raise ConfigError(
                "a distillation temperature is used only with distill > 0: set distill, or "
                "leave the temperature at its default"
            )
        if teacher is not None and self.distill == 0:
            raise ConfigError(
                "a teacher is learned from only with distill > 0: set its weight, or leave the "
                "teacher out"
            )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for name, default in LATER_DEFAULTS.items():
            if data[name] == default:
                del data[name]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        if isinstance(kwargs.get("augment"), dict):
            kwargs["augment"] = AugmentConfig(**kwargs["augment"])
        return cls(**kwargs)


# One epoch leaves no time to learn through augmentation and wants more, smaller steps.
# Chosen on the validation split with benchmarks/one_epoch.py (README, "One-epoch recipe").
ONE_EPOCH_DEFAULTS: dict[str, Any] = {"batch_size": 64, "lr": 0.1, "augment": NO_AUGMENT}

# The optimizer a search trains with unless told, and each optimizer's own settings where a
# user names it without them. AdamW with a low beta1 was chosen on the validation split with
# benchmarks/recipe.py (docs/benchmarks.md, "A recipe for networks this small"): it gained on
# the mean over seeds 001 and 002 and two searched networks, 3 seeds each, on MNIST and MNIST
# at 14x14, at the 3-epoch and the one-epoch recipes; SGD's are ``TrainConfig``'s defaults
# (with ``ONE_EPOCH_DEFAULTS``' learning rate at one epoch).
DEFAULT_OPTIMIZER = "adamw"
OPTIMIZER_DEFAULTS: dict[str, dict[str, Any]] = {
    "sgd": {},
    "adamw": {"lr": 0.03, "weight_decay": 0.01, "beta1": 0.7},  # at both recipes
}


def default_recipe(epochs: int | None = None, **overrides: Any) -> TrainConfig:
    """The recipe for an epoch budget: ``TrainConfig``'s defaults, or with ``epochs == 1`` the
    one-epoch defaults, trained with ``DEFAULT_OPTIMIZER`` (or the ``optimizer`` given) at
    its ``OPTIMIZER_DEFAULTS``; ``overrides`` (settings the user gave) win over all."""
    overrides = {k: v for k, v in overrides.items() if v is not None}
    epochs = TrainConfig.epochs if epochs is None else epochs
    optimizer = overrides.get("optimizer") or DEFAULT_OPTIMIZER
    if optimizer not in OPTIMIZER_DEFAULTS:
        raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)}")
    check_momentum(optimizer, overrides)
    base = dict(ONE_EPOCH_DEFAULTS) if epochs == 1 else {}
    base.update(optimizer=optimizer, **OPTIMIZER_DEFAULTS[optimizer])
    return TrainConfig(epochs=epochs, **{**base, **overrides})


def check_momentum(optimizer: str, given: dict[str, Any]) -> None:
    """A momentum given for AdamW would change nothing but the recipe's name: refused."""
    if optimizer == "adamw" and given.get("momentum") is not None:
        raise ConfigError(
            "--momentum is SGD's; AdamW (the default optimizer) has its beta1: add "
            "--optimizer sgd to train with SGD and this momentum"
        )
