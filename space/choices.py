"""What the space may produce (``SpaceConfig``): the block kinds, transitions, heads and kernels
it samples from and the ranges of its structure, each checked when the config is made."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from budgetnas.space.spec import SpecError

BLOCKS = ("conv", "sepconv", "mbconv")  # what a stage's layers can be


TRANSITIONS = ("pool", "strided")  # max-pool + 1x1 conv, or a strided conv


HEADS = ("gap", "conv3_gap")


KERNELS = (1, 3, 5, 7)


@dataclass(frozen=True)
class SpaceConfig:
    """What the space may produce; the defaults are the space the search had before the space
    was a file, and suit 28x28 inputs and 2K-100K budgets.

    The image settings (``in_channels`` .. ``norm``) come from the data. The rest is what a
    space file holds (``space.spacefile``): ranges (``[low, high]``) and lists of choices; a
    list of one choice is a fixed setting, not a suggestion the sampler makes."""

    in_channels: int = 1
    input_size: int = 28
    num_classes: int = 10
    norm: tuple[float, float] = (0.1307, 0.3081)
    min_size_fraction: float = 0.3  # smallest target, as a fraction of the budget
    dropout: float = 0.0
    stages: tuple[int, int] = (2, 3)  # resolution stages, a range
    convs: tuple[int, int] = (1, 3)  # layers per stage, a range
    blocks: tuple[str, ...] = ("conv",)  # a stage's layers: conv, sepconv or mbconv
    kernels: tuple[int, ...] = (3,)  # kernel sizes of a stage's layers
    width: tuple[float, float] = (8.0, 32.0)  # relative layer width, log-uniform
    padding: tuple[int, ...] = (0, 1)  # 0: valid, 1: same
    residual: tuple[bool, ...] = (False, True)  # a shortcut around a same-padded stage
    expand: tuple[int, ...] = (4,)  # mbconv expansion ratios
    se: tuple[bool, ...] = (False,)  # squeeze-excitation after a stage
    transitions: tuple[str, ...] = ("pool",)  # between stages: pool or strided
    transition_width: tuple[float, float] = (4.0, 24.0)
    pool_first: tuple[bool, ...] = (True, False)  # pool transition: pool then 1x1, or after
    heads: tuple[str, ...] = HEADS

    def __post_init__(self) -> None:
        for name in ("min_size_fraction", "dropout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise SpecError(f"space: {name} must be a number, got {value!r}")
        if not 0 < self.min_size_fraction <= 1:
            raise SpecError(
                f"space: min_size_fraction must be in (0, 1], got {self.min_size_fraction}"
            )
        if not 0 <= self.dropout < 1:
            raise SpecError(f"space: dropout must be in [0, 1), got {self.dropout}")
        for name in ("stages", "convs"):
            low, high = _pair(self, name, int)
            if not 1 <= low <= high or (name == "stages" and not 2 <= low <= high <= 4):
                limits = "2 <= low <= high <= 4" if name == "stages" else "1 <= low <= high"
                raise SpecError(
                    f"space: {name} must be [low, high] with {limits}, got {[low, high]}"
                )
            if name == "convs" and high > 6:
                raise SpecError(f"space: convs may go up to 6 per stage, got {high}")
        for name in ("width", "transition_width"):
            low, high = _pair(self, name, float)
            if not 0 < low <= high:
                raise SpecError(f"space: {name} must be [low, high] with 0 < low <= high")
        _choices(self, "blocks", BLOCKS)
        _choices(self, "kernels", KERNELS)
        _choices(self, "padding", (0, 1))
        _choices(self, "residual", (False, True))
        _choices(self, "expand", tuple(range(1, 9)))
        _choices(self, "se", (False, True))
        _choices(self, "transitions", TRANSITIONS)
        _choices(self, "pool_first", (True, False))
        _choices(self, "heads", HEADS)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpaceConfig:
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**kwargs)


def _pair(cfg: SpaceConfig, name: str, kind: type) -> tuple:
    """``[low, high]`` of integers (``kind`` int: ``2.0`` is not one) or of finite numbers
    (a width of ``inf`` would pass every range check and overflow when a network is built)."""
    value = getattr(cfg, name)
    if (
        not isinstance(value, tuple)
        or len(value) != 2
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        raise SpecError(f"space: {name} must be a range [low, high], got {_listed(value)}")
    if kind is int and not all(isinstance(v, int) for v in value):
        raise SpecError(f"space: {name} must be a range [low, high] of integers, got {list(value)}")
    if not all(math.isfinite(v) for v in value):
        raise SpecError(
            f"space: {name} must be a range [low, high] of finite numbers, got {list(value)}"
        )
    return value


def _listed(value: Any) -> str:
    return repr(list(value)) if isinstance(value, tuple) else repr(value)


def _choices(cfg: SpaceConfig, name: str, allowed: tuple) -> None:
    """Every choice one of ``allowed`` and of its type: ``3.0`` equals the kernel size 3 but
    is not one (a conv would refuse it when the network is built)."""
    value = getattr(cfg, name)
    if not isinstance(value, tuple) or not value:
        raise SpecError(f"space: {name} must be a non-empty list of choices, got {value!r}")
    for v in value:
        if v not in allowed or type(v) is not type(allowed[0]):
            known = ", ".join(map(str, allowed))
            kind = {int: "integers", str: "names", bool: "true or false"}[type(allowed[0])]
            hint = f" (choices are {kind})" if type(v) is not type(allowed[0]) else ""
            raise SpecError(f"space: {name}: {v!r} is not one of {known}{hint}")
    if len(set(value)) != len(value):
        raise SpecError(f"space: {name} lists a choice twice: {list(value)}")
