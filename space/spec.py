"""The architecture spec: a frozen, validated table of blocks that everything else derives from.

An ``ArchSpec`` is a flat sequence of blocks followed by a head. Counting, building, rendering
to source and storing as JSON are all pure functions of it, so a spec read back from a study
months later rebuilds exactly the network that was trained.

Block kinds live in ``BLOCK_KINDS`` (a registry, like timm's ``register_model``): adding a
kind there makes the JSON loader, the counters and the parametrized tests pick it up.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, ClassVar

ACTIVATIONS = ("relu", "gelu", "none")
ORDERS = ("bn_act", "act_bn")  # conv -> BN -> act, or conv -> act -> BN
HEAD_KINDS = ("conv_gap", "fc")
MAX_CHANNELS = 4096


class SpecError(ValueError):
    """An architecture spec that cannot be built; the message says what to change."""


def _check_int(owner: str, name: str, value: Any, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{owner}: {name} must be an integer, got {value!r}")
    if not lo <= value <= hi:
        raise SpecError(f"{owner}: {name} must be between {lo} and {hi}, got {value}")


def _check_bool(owner: str, name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise SpecError(f"{owner}: {name} must be true or false, got {value!r}")


def _check_choice(owner: str, name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise SpecError(f"{owner}: {name} must be one of {', '.join(choices)}; got {value!r}")


def _check_prob(owner: str, name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise SpecError(f"{owner}: {name} must be a number in [0, 1), got {value!r}")


@dataclass(frozen=True)
class Conv:
    """A k x k convolution (stride 1), optionally followed by BatchNorm, an activation, dropout."""

    out: int
    k: int = 3
    pad: int = 0
    bias: bool = False
    bn: bool = True
    act: str = "relu"
    order: str = "bn_act"
    dropout: float = 0.0
    kind: ClassVar[str] = "conv"

    def __post_init__(self) -> None:
        _check_int("conv", "out", self.out, 1, MAX_CHANNELS)
        _check_int("conv", "k", self.k, 1, 7)
        if self.k % 2 == 0:
            raise SpecError(f"conv: kernel size must be odd, got {self.k}")
        _check_int("conv", "pad", self.pad, 0, self.k // 2)
        _check_bool("conv", "bias", self.bias)
        _check_bool("conv", "bn", self.bn)
        _check_choice("conv", "act", self.act, ACTIVATIONS)
        _check_choice("conv", "order", self.order, ORDERS)
        _check_prob("conv", "dropout", self.dropout)

    def describe(self) -> str:
        return f"conv {self.k}x{self.k}->{self.out}" + (f" pad {self.pad}" if self.pad else "")


@dataclass(frozen=True)
class Pool:
    """A 2x2 max-pool, stride 2 (``ceil`` keeps the odd last row and column)."""

    ceil: bool = False
    kind: ClassVar[str] = "pool"

    def __post_init__(self) -> None:
        _check_bool("pool", "ceil", self.ceil)

    def describe(self) -> str:
        return "max-pool 2x2" + (" (ceil)" if self.ceil else "")


@dataclass(frozen=True)
class Transition:
    """Max-pool 2x2 and a 1x1 convolution to ``out`` channels, in either order."""

    out: int
    pool_first: bool = True
    bias: bool = False
    bn: bool = False
    act: str = "none"
    kind: ClassVar[str] = "transition"

    def __post_init__(self) -> None:
        _check_int("transition", "out", self.out, 1, MAX_CHANNELS)
        _check_bool("transition", "pool_first", self.pool_first)
        _check_bool("transition", "bias", self.bias)
        _check_bool("transition", "bn", self.bn)
        _check_choice("transition", "act", self.act, ACTIVATIONS)

    def describe(self) -> str:
        return f"transition {'pool+1x1' if self.pool_first else '1x1+pool'}->{self.out}"


@dataclass(frozen=True)
class Residual:
    """``body(x) + shortcut(x)``; the shortcut is a 1x1 conv (``proj``) or the identity."""

    body: tuple[Conv, ...]
    proj: bool = True
    bias: bool = False
    kind: ClassVar[str] = "residual"

    def __post_init__(self) -> None:
        if not isinstance(self.body, tuple) or not self.body:
            raise SpecError("residual: body must be a non-empty list of conv blocks")
        for conv in self.body:
            if not isinstance(conv, Conv):
                raise SpecError(f"residual: body may hold only conv blocks, got {conv!r}")
            if conv.pad != conv.k // 2:
                raise SpecError(
                    f"residual: body conv {conv.k}x{conv.k} must use pad {conv.k // 2} "
                    "so that the shortcut and the body have the same size"
                )
        _check_bool("residual", "proj", self.proj)
        _check_bool("residual", "bias", self.bias)

    @property
    def out(self) -> int:
        return self.body[-1].out

    def describe(self) -> str:
        inner = ", ".join(c.describe() for c in self.body)
        return f"residual[{inner}]" + (" +1x1" if self.proj else "")


Block = Conv | Pool | Transition | Residual

BLOCK_KINDS: dict[str, type] = {cls.kind: cls for cls in (Conv, Pool, Transition, Residual)}


@dataclass(frozen=True)
class Head:
    """The classifier.

    ``conv_gap``: a k x k conv to the classes, then global average pooling.
    ``fc``: adaptive average pooling to ``pool_to`` x ``pool_to``, flatten, the ``hidden``
    linear layers (activation + dropout), then a linear layer to the classes. With
    ``pool_to=1`` and no hidden layer this is GAP followed by a 1x1 conv to the classes.
    """

    kind: str = "fc"
    k: int = 1
    pad: int = 0
    bias: bool = True
    hidden: tuple[int, ...] = ()
    pool_to: int = 1
    act: str = "relu"
    dropout: float = 0.0

    def __post_init__(self) -> None:
        _check_choice("head", "kind", self.kind, HEAD_KINDS)
        _check_int("head", "k", self.k, 1, 7)
        if self.k % 2 == 0:
            raise SpecError(f"head: kernel size must be odd, got {self.k}")
        _check_int("head", "pad", self.pad, 0, self.k // 2)
        _check_bool("head", "bias", self.bias)
        if not isinstance(self.hidden, tuple):
            raise SpecError(f"head: hidden must be a list of layer widths, got {self.hidden!r}")
        for h in self.hidden:
            _check_int("head", "hidden width", h, 1, MAX_CHANNELS)
        _check_int("head", "pool_to", self.pool_to, 1, 64)
        _check_choice("head", "act", self.act, ACTIVATIONS)
        _check_prob("head", "dropout", self.dropout)
        if self.kind == "conv_gap" and self.hidden:
            raise SpecError("head: a conv_gap head has no hidden layers; use kind 'fc'")

    def describe(self) -> str:
        if self.kind == "conv_gap":
            return f"conv {self.k}x{self.k}->classes + GAP"
        pool = "GAP" if self.pool_to == 1 else f"pool to {self.pool_to}x{self.pool_to}"
        return f"{pool} + fc" + "".join(f"->{h}" for h in self.hidden) + "->classes"


def conv_out_size(size: int, k: int, pad: int) -> int:
    return size + 2 * pad - k + 1


def pool_out_size(size: int, ceil: bool) -> int:
    return -(-size // 2) if ceil else size // 2


@dataclass(frozen=True)
class ArchSpec:
    """A network for ``in_channels`` x ``input_size`` x ``input_size`` images.

    ``norm`` is the (mean, std) the network subtracts and divides by on its input, so a built
    or exported network takes raw pixel values in [0, 1].
    """

    blocks: tuple[Block, ...]
    head: Head = field(default_factory=Head)
    in_channels: int = 1
    input_size: int = 28
    num_classes: int = 10
    norm: tuple[float, float] = (0.1307, 0.3081)

    def __post_init__(self) -> None:
        _check_int("spec", "in_channels", self.in_channels, 1, 16)
        _check_int("spec", "input_size", self.input_size, 1, 1024)
        _check_int("spec", "num_classes", self.num_classes, 2, 100_000)
        if not isinstance(self.blocks, tuple):
            raise SpecError(f"spec: blocks must be a list, got {type(self.blocks).__name__}")
        for i, block in enumerate(self.blocks, 1):
            if not isinstance(block, tuple(BLOCK_KINDS.values())):
                raise SpecError(f"spec: block {i} is not a block: {block!r}")
        if not isinstance(self.head, Head):
            raise SpecError(f"spec: head is not a head: {self.head!r}")
        if (
            not isinstance(self.norm, tuple)
            or len(self.norm) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in self.norm)
            or not self.norm[1] > 0
        ):
            raise SpecError(f"spec: norm must be (mean, std) with std > 0, got {self.norm!r}")
        self.feature_shape()  # walks the blocks; raises SpecError where a map vanishes

    def feature_shape(self) -> tuple[int, int]:
        """(channels, size) of the feature map that enters the head; validates on the way."""
        channels, size = self.in_channels, self.input_size
        for i, block in enumerate(self.blocks, 1):
            if isinstance(block, Residual):
                if not block.proj and block.out != channels:
                    raise SpecError(
                        f"block {i} ({block.describe()}): an identity shortcut needs "
                        f"{channels} output channels, the body gives {block.out}; set proj"
                    )
                channels = block.out
                continue
            if isinstance(block, Conv):
                size, channels = conv_out_size(size, block.k, block.pad), block.out
            elif isinstance(block, Pool):
                size = pool_out_size(size, block.ceil)
            else:  # Transition
                size, channels = pool_out_size(size, False), block.out
            if size < 1:
                raise SpecError(
                    f"feature map shrinks to {max(size, 0)}x{max(size, 0)} after block {i} "
                    f"({block.describe()}); add padding or remove a block before it"
                )
        head = self.head
        if head.kind == "conv_gap" and conv_out_size(size, head.k, head.pad) < 1:
            raise SpecError(
                f"head conv {head.k}x{head.k} does not fit the {size}x{size} feature map; "
                "use a smaller kernel or padding"
            )
        return channels, size

    # ---- JSON ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain data; every block carries its ``kind``. Canonical: equal specs, equal dicts."""
        return {
            "blocks": [_block_to_dict(b) for b in self.blocks],
            "head": _plain(asdict(self.head)),
            "in_channels": self.in_channels,
            "input_size": self.input_size,
            "num_classes": self.num_classes,
            "norm": list(self.norm),
        }

    def to_json(self, *, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=indent)

    @classmethod
    def from_dict(cls, data: Any) -> ArchSpec:
        """Inverse of ``to_dict``; anything malformed raises ``SpecError``, never another error."""
        if not isinstance(data, dict):
            raise SpecError(f"spec must be a JSON object, got {type(data).__name__}")
        _check_keys("spec", data, {f.name for f in fields(cls)}, required={"blocks"})
        blocks = data["blocks"]
        if not isinstance(blocks, list):
            raise SpecError("spec: blocks must be a list")
        kwargs: dict[str, Any] = {k: v for k, v in data.items() if k not in ("blocks", "head")}
        if "norm" in kwargs:
            if not isinstance(kwargs["norm"], list):
                raise SpecError("spec: norm must be a list [mean, std]")
            kwargs["norm"] = tuple(kwargs["norm"])
        head = _head_from_dict(data["head"]) if "head" in data else Head()
        return cls(blocks=tuple(_block_from_dict(b) for b in blocks), head=head, **kwargs)

    @classmethod
    def from_json(cls, text: str) -> ArchSpec:
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, TypeError, RecursionError) as err:
            raise SpecError(f"spec is not valid JSON: {err}") from None
        return cls.from_dict(data)

    def summary(self) -> str:
        """One line: every block, then the head."""
        return " | ".join([b.describe() for b in self.blocks] + [self.head.describe()])


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _block_to_dict(block: Block) -> dict[str, Any]:
    if isinstance(block, Residual):
        d: dict[str, Any] = {"body": [_block_to_dict(c) for c in block.body]}
        d.update(proj=block.proj, bias=block.bias)
    else:
        d = _plain(asdict(block))
    return {"kind": block.kind, **d}


def _check_keys(owner: str, data: dict, allowed: set[str], required: set[str]) -> None:
    unknown = sorted(str(k) for k in set(data) - allowed)
    if unknown:
        raise SpecError(f"{owner}: unknown field(s) {', '.join(unknown)}")
    missing = sorted(required - set(data))
    if missing:
        raise SpecError(f"{owner}: missing field(s) {', '.join(missing)}")


def _block_from_dict(data: Any) -> Block:
    if not isinstance(data, dict):
        raise SpecError(f"a block must be a JSON object, got {data!r}")
    kind = data.get("kind")
    cls = BLOCK_KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise SpecError(f"unknown block kind {kind!r}; known: {', '.join(BLOCK_KINDS)}")
    body = {k: v for k, v in data.items() if k != "kind"}
    allowed = {f.name for f in fields(cls)}
    required = {
        f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING
    }
    _check_keys(kind, body, allowed, required)
    if cls is Residual:
        if not isinstance(body["body"], list):
            raise SpecError("residual: body must be a list of conv blocks")
        body["body"] = tuple(_block_from_dict(c) for c in body["body"])
    return cls(**body)


def _head_from_dict(data: Any) -> Head:
    if not isinstance(data, dict):
        raise SpecError(f"head must be a JSON object, got {data!r}")
    _check_keys("head", data, {f.name for f in fields(Head)}, required=set())
    kwargs = dict(data)
    if "hidden" in kwargs:
        if not isinstance(kwargs["hidden"], list):
            raise SpecError("head: hidden must be a list of layer widths")
        kwargs["hidden"] = tuple(kwargs["hidden"])
    return Head(**kwargs)
