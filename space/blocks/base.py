"""The block protocol (``Block``), its registry, and what every kind shares (``Layer``
records, activation orders, dropout kinds, output sizes).

A block kind is one frozen dataclass implementing ``Block`` and one ``@register_block`` line.
Everything else reads a block only through this protocol: ``ArchSpec`` validation walks
``check_input`` / ``out_size`` / ``out_channels``, ``space.count`` sums ``cost`` and
``receptive``, ``space.build`` and ``space.render`` instantiate or print ``layers``, and the JSON
loader dispatches on ``kind``. The parametrized tests run over ``BLOCK_KINDS`` and each kind's
``examples()``, so a new kind is counted, built, rendered and round-tripped by the existing
tests without touching them.

Nothing here imports torch: a ``Layer`` is a record naming a ``torch.nn`` class and its
arguments.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any, ClassVar, TypeVar

from budgetnas.space.checks import (
    SpecError,
    check_keys,
)

ORDERS = ("bn_act", "act_bn")  # conv -> BN -> act, or conv -> act -> BN
# what a conv's dropout zeroes: single elements (nn.Dropout) or whole channels (nn.Dropout2d)
DROPOUT_KINDS = ("element", "channel")
DROPOUT_LAYERS = {"element": "Dropout", "channel": "Dropout2d"}
BODY_KINDS = ("conv", "sepconv")  # what a residual block's body may hold


@dataclass(frozen=True)
class Layer:
    """One ``torch.nn`` layer: ``getattr(nn, op)(*args, **kwargs)``.

    ``op == "Residual"`` is the one composite: ``args`` is ``(body, shortcut)``, two tuples of
    layers (an empty shortcut is the identity).
    """

    op: str
    args: tuple[Any, ...] = ()
    kwargs: tuple[tuple[str, Any], ...] = ()


def act_layers(name: str) -> list[Layer]:
    return {"relu": [Layer("ReLU")], "gelu": [Layer("GELU")], "none": []}[name]


def conv_out_size(size: int, k: int, pad: int) -> int:
    return size + 2 * pad - k + 1


def pool_out_size(size: int, ceil: bool) -> int:
    return -(-size // 2) if ceil else size // 2


def plain(d: dict[str, Any]) -> dict[str, Any]:
    """A dataclass dict with tuples as lists: what JSON holds."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


class Block:
    """The protocol every block kind implements (shapes are (channels, size, size))."""

    kind: ClassVar[str]

    def check_input(self, c_in: int) -> None:
        """Raise ``SpecError`` if the block cannot take ``c_in`` input channels."""

    def out_channels(self, c_in: int) -> int:
        raise NotImplementedError

    def out_size(self, size: int) -> int:
        """Output side length for a ``size`` x ``size`` input (< 1: the map vanished)."""
        raise NotImplementedError

    def cost(self, c_in: int, size: int) -> tuple[int, int]:
        """(parameters, multiply-accumulates per image) on a c_in x size x size input."""
        raise NotImplementedError

    def receptive(self, rf: int, jump: int) -> tuple[int, int]:
        """(receptive field, jump) after the block, from those before it."""
        raise NotImplementedError

    def layers(self, c_in: int) -> list[Layer]:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **plain(asdict(self))}  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, body: dict[str, Any]) -> Block:
        """The block from its JSON fields (``kind`` removed); ``SpecError`` if malformed."""
        check_keys(cls.kind, body, *field_names(cls))
        return cls(**body)

    @classmethod
    def examples(cls) -> tuple[Block, ...]:
        """A few valid instances covering the kind's options (for the parametrized tests)."""
        raise NotImplementedError


BLOCK_KINDS: dict[str, type[Block]] = {}
B = TypeVar("B", bound=type[Block])


def register_block(cls: B) -> B:
    """Class decorator: make ``cls`` a block kind known to specs, JSON and the tests."""
    if cls.kind in BLOCK_KINDS:
        raise ValueError(f"block kind {cls.kind!r} registered twice")
    BLOCK_KINDS[cls.kind] = cls
    return cls


def field_names(cls: type) -> tuple[set[str], set[str]]:
    """(allowed, required) field names of a dataclass."""
    allowed = {f.name for f in fields(cls)}
    required = {
        f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING
    }
    return allowed, required


def block_from_dict(data: Any) -> Block:
    if not isinstance(data, dict):
        raise SpecError(f"a block must be a JSON object, got {data!r}")
    kind = data.get("kind")
    cls = BLOCK_KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise SpecError(f"unknown block kind {kind!r}; known: {', '.join(BLOCK_KINDS)}")
    return cls.from_dict({k: v for k, v in data.items() if k != "kind"})
