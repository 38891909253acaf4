"""``SpecError`` and the field checks every part of a spec uses to raise it."""

from __future__ import annotations

from typing import Any

ACTIVATIONS = ("relu", "gelu", "none")
MAX_CHANNELS = 4096


class SpecError(ValueError):
    """An architecture spec that cannot be built; the message says what to change."""


def check_int(owner: str, name: str, value: Any, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{owner}: {name} must be an integer, got {value!r}")
    if not lo <= value <= hi:
        raise SpecError(f"{owner}: {name} must be between {lo} and {hi}, got {value}")


def check_bool(owner: str, name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise SpecError(f"{owner}: {name} must be true or false, got {value!r}")


def check_choice(owner: str, name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise SpecError(f"{owner}: {name} must be one of {', '.join(choices)}; got {value!r}")


def check_prob(owner: str, name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise SpecError(f"{owner}: {name} must be a number in [0, 1), got {value!r}")


def check_keys(owner: str, data: dict, allowed: set[str], required: set[str]) -> None:
    unknown = sorted(str(k) for k in set(data) - allowed)
    if unknown:
        raise SpecError(f"{owner}: unknown field(s) {', '.join(unknown)}")
    missing = sorted(required - set(data))
    if missing:
        raise SpecError(f"{owner}: missing field(s) {', '.join(missing)}")
