"""The search space as a file a user can read, copy, edit and pass back (``--space FILE``).

The file is TOML. It holds the ranges and choices of ``space.choices.SpaceConfig`` (the image
settings come from the data, not from the file). ``dump(SpaceConfig())`` is the shipped
``default.toml``, and ``load`` of it gives ``SpaceConfig()`` back: the default space, which
samples exactly what the search sampled before the space was a file. ``rich.toml`` adds
depthwise-separable and inverted-residual layers, 5x5 kernels, squeeze-excitation and strided
transitions.

A file with an error is one ``SpecError`` line naming the file, the section and the key.
"""

from __future__ import annotations

import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from budgetnas.space.checks import SpecError
from budgetnas.space.choices import SpaceConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

SHIPPED = {"default": "default.toml", "rich": "rich.toml"}
IMAGE_SETTINGS = ("in_channels", "input_size", "num_classes", "norm")

# (section, key) in the file -> SpaceConfig field, with the comment the file shows
LAYOUT: list[tuple[str, str, str, str]] = [
    (
        "",
        "min_size_fraction",
        "min_size_fraction",
        "a candidate fills at least this share of the cap",
    ),
    ("", "dropout", "dropout", "dropout after each conv layer (conv blocks)"),
    ("stages", "count", "stages", "resolution stages, [low, high] (2 to 4)"),
    ("stages", "layers", "convs", "layers per stage, [low, high] (1 to 6)"),
    (
        "stages",
        "blocks",
        "blocks",
        "conv | sepconv (depthwise-separable) | mbconv (inverted residual)",
    ),
    ("stages", "kernels", "kernels", "kernel sizes: 1 | 3 | 5 | 7"),
    ("stages", "width", "width", "relative layer width, [low, high], log-uniform"),
    ("stages", "padding", "padding", "0: valid | 1: same"),
    (
        "stages",
        "residual",
        "residual",
        "a shortcut around a same-padded stage (mbconv: skips between its layers)",
    ),
    ("stages", "expand", "expand", "mbconv expansion ratios (1 to 8)"),
    ("stages", "se", "se", "squeeze-excitation after a stage"),
    (
        "transitions",
        "kinds",
        "transitions",
        "between stages: pool (max-pool + 1x1 conv) | strided (3x3 conv, stride 2)",
    ),
    ("transitions", "width", "transition_width", "relative width, [low, high], log-uniform"),
    ("transitions", "pool_first", "pool_first", "pool transition: pool then 1x1, or 1x1 then pool"),
    ("head", "kinds", "heads", "gap: global average pooling + linear | conv3_gap: 3x3 conv + GAP"),
]
FIELD_TO_KEY = {field: (f"[{sec}] {key}" if sec else key) for sec, key, field, _ in LAYOUT}

HEADER = """\
# budgetnas search space. Ranges are [low, high]; lists are the choices the sampler picks
# from (a list of one is a fixed setting, not a choice). Copy, edit, and search with
# budgetnas search --space FILE; budgetnas space --show prints the default.
"""


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def dump(cfg: SpaceConfig) -> str:
    """The file of ``cfg`` (its image settings left out), with a comment on every key."""
    lines = [HEADER]
    section = None
    for sec, key, field, comment in LAYOUT:
        if sec != section:
            if sec:
                lines.append(f"\n[{sec}]")
            section = sec
        setting = f"{key} = {_toml(getattr(cfg, field))}"
        lines.append(f"{setting:<34} # {comment}")
    return "\n".join(lines) + "\n"


def parse(text: str, *, name: str = "space file") -> dict[str, Any]:
    """The ``SpaceConfig`` settings a file's text holds; ``SpecError`` naming the key."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"{name} is not valid TOML: {err}") from None
    known = {(sec, key): field for sec, key, field, _ in LAYOUT}
    sections = {sec for sec, *_ in LAYOUT if sec}
    values: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            if key not in sections:
                raise SpecError(
                    f"{name}: unknown section [{key}]; known: {', '.join(sorted(sections))}"
                )
            for inner, v in value.items():
                if (key, inner) not in known:
                    keys = ", ".join(k for s, k, _, _ in LAYOUT if s == key)
                    raise SpecError(f"{name}: unknown key [{key}] {inner}; known: {keys}")
                values[known[(key, inner)]] = v
        elif ("", key) in known:
            values[known[("", key)]] = value
        else:
            raise SpecError(f"{name}: unknown key {key}")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}


def space_config(settings: dict[str, Any], images: dict[str, Any], *, name: str) -> SpaceConfig:
    """``SpaceConfig`` of a file's settings and the data's image settings; a bad value is a
    ``SpecError`` naming the file and the key."""
    try:
        return SpaceConfig(**settings, **images)
    except SpecError as err:
        message = str(err).removeprefix("space: ")
        field = message.split(":")[0].split(" ")[0]
        key = FIELD_TO_KEY.get(field, field)
        rest = message[len(field) :].lstrip(":").strip() if message.startswith(field) else message
        raise SpecError(f"{name}: {key}: {rest}") from None
    except TypeError as err:  # a value of the wrong kind where a number was expected
        raise SpecError(f"{name}: {err}") from None


def read(path: str | Path) -> dict[str, Any]:
    """The settings of a space file, or of a shipped one by name (``default``, ``rich``)."""
    name = str(path)
    if name in SHIPPED:
        return parse(shipped_text(name), name=f"the {name} space")
    p = Path(path)
    if p.is_dir():
        raise SpecError(f"space file {p} is a directory; give the space file inside it")
    if not p.is_file():
        raise SpecError(
            f"space file {p} does not exist (shipped: {', '.join(SHIPPED)}; "
            "budgetnas space --show prints the default)"
        )
    return parse(p.read_text(encoding="utf-8"), name=f"space file {p}")


def shipped_text(name: str) -> str:
    return (Path(__file__).parent / SHIPPED[name]).read_text(encoding="utf-8")


def differences_from_default(cfg: SpaceConfig) -> list[str]:
    """The keys whose settings differ from the default space (for a one-line summary)."""
    default = SpaceConfig()
    return [
        FIELD_TO_KEY[f.name]
        for f in fields(SpaceConfig)
        if f.name not in IMAGE_SETTINGS and getattr(cfg, f.name) != getattr(default, f.name)
    ]
