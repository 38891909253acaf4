"""Counts and durations as users write them and read them: parameter caps (``10000``, ``10k``,
``12.5k``, ``1.2M``, ladders), ``--budget-time`` (``600``, ``90s``, ``45m``, ``1.5h``), and both
printed back."""

from __future__ import annotations

import math
import re

from budgetnas.search.errors import SearchError

_BUDGET = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kKmM]?)\s*$")
_SCALE = {"": 1, "k": 1_000, "m": 1_000_000}


def parse_count(text: str, *, what: str = "budget", unit: str = "parameter") -> int:
    """The whole count ``text`` names (``10k``, ``2M``), as an integer; ``SearchError`` (saying
    ``bad {what}``) if it names none."""
    m = _BUDGET.match(str(text))
    if not m and str(text).strip().startswith("-"):
        raise SearchError(f"bad {what} {text!r}: it must be a positive number of {unit}s")
    if not m:
        raise SearchError(
            f"bad {what} {text!r}: write a {unit} count such as 10000, 10k, 12.5k or 1.2M"
        )
    value = float(m.group(1)) * _SCALE[m.group(2).lower()]
    if not math.isfinite(value) or value != int(value):
        raise SearchError(f"bad {what} {text!r}: it must be a whole number of {unit}s")
    if value < 1:
        raise SearchError(f"bad {what} {text!r}: it must be at least 1 {unit}")
    return int(value)


def parse_budget(text: str) -> int:
    """The parameter cap ``text`` names, as an integer; ``SearchError`` if it names none."""
    return parse_count(text)


def parse_ladder(text: str) -> tuple[int, ...]:
    """``10k,13k,25k`` -> (10000, 13000, 25000): the caps one search answers, ascending."""
    caps = sorted({parse_budget(part) for part in str(text).split(",")})
    return tuple(caps)


def format_params(n: int) -> str:
    """12400 -> '12.4K', 9798 -> '9.8K', 812 -> '812', 2_000_000_000 -> '2G': three significant
    digits in the largest unit that leaves at least 1 (999_999 -> '1M', never '1e+03K')."""
    units = ((1_000, "K"), (1_000_000, "M"), (1_000_000_000, "G"))
    for i in reversed(range(len(units))):
        scale, unit = units[i]
        if n < scale:
            continue
        text = f"{n / scale:.3g}"
        if "e" in text:  # it rounds to 1000: the next unit up, or whole ones of the largest
            return format_params(units[i + 1][0]) if i + 1 < len(units) else f"{n / scale:.0f}G"
        return text + unit
    return str(n)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|m|min|h)?\s*$")
_SECONDS = {None: 1, "s": 1, "m": 60, "min": 60, "h": 3600}


def parse_duration(text: str, *, what: str = "--budget-time") -> float:
    """``90s``, ``30m``, ``1.5h`` or plain seconds (``600``) -> seconds; ``SearchError`` if
    ``text`` names no positive duration."""
    m = _DURATION.match(str(text).lower())
    if not m:
        raise SearchError(f"bad {what} {text!r}: write a duration such as 600, 90s, 30m or 1.5h")
    seconds = float(m.group(1)) * _SECONDS[m.group(2)]
    if seconds <= 0:
        raise SearchError(f"bad {what} {text!r}: it must be more than 0 seconds")
    return seconds


def duration(seconds: float) -> str:
    """``24 s``, ``3.5 min``, ``1.2 h``: seconds under a minute stay seconds."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
