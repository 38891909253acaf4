"""Block kinds: each one says its own shape, cost, receptive field and layers.

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
    ACTIVATIONS,
    MAX_CHANNELS,
    SpecError,
    check_bool,
    check_choice,
    check_int,
    check_keys,
    check_prob,
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
        check_keys(cls.kind, body, *_field_names(cls))
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


def _field_names(cls: type) -> tuple[set[str], set[str]]:
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


@register_block
@dataclass(frozen=True)
class Conv(Block):
    """A k x k convolution (stride 1), optionally followed by BatchNorm, an activation, dropout.

    ``dropout_kind``: ``element`` zeroes single activations, ``channel`` whole feature maps
    (``nn.Dropout2d``). A spec stored before the kind existed has element dropout, and an
    element-dropout conv's JSON leaves the kind out, so its JSON (and every key derived from
    it) is what it was."""

    out: int
    k: int = 3
    pad: int = 0
    bias: bool = False
    bn: bool = True
    act: str = "relu"
    order: str = "bn_act"
    dropout: float = 0.0
    dropout_kind: str = "element"
    kind: ClassVar[str] = "conv"

    def __post_init__(self) -> None:
        check_int("conv", "out", self.out, 1, MAX_CHANNELS)
        check_int("conv", "k", self.k, 1, 7)
        if self.k % 2 == 0:
            raise SpecError(f"conv: kernel size must be odd, got {self.k}")
        check_int("conv", "pad", self.pad, 0, self.k // 2)
        check_bool("conv", "bias", self.bias)
        check_bool("conv", "bn", self.bn)
        check_choice("conv", "act", self.act, ACTIVATIONS)
        check_choice("conv", "order", self.order, ORDERS)
        check_prob("conv", "dropout", self.dropout)
        check_choice("conv", "dropout_kind", self.dropout_kind, DROPOUT_KINDS)

    def out_channels(self, c_in: int) -> int:
        return self.out

    def out_size(self, size: int) -> int:
        return conv_out_size(size, self.k, self.pad)

    def cost(self, c_in: int, size: int) -> tuple[int, int]:
        weights = self.out * c_in * self.k * self.k
        params = weights + (self.out if self.bias else 0) + (2 * self.out if self.bn else 0)
        return params, weights * self.out_size(size) ** 2

    def receptive(self, rf: int, jump: int) -> tuple[int, int]:
        return rf + (self.k - 1) * jump, jump

    def layers(self, c_in: int) -> list[Layer]:
        conv = Layer(
            "Conv2d",
            (c_in, self.out),
            (("kernel_size", self.k), ("padding", self.pad), ("bias", self.bias)),
        )
        bn = [Layer("BatchNorm2d", (self.out,))] if self.bn else []
        act = act_layers(self.act)
        drop = [Layer(DROPOUT_LAYERS[self.dropout_kind], (self.dropout,))] if self.dropout else []
        return [conv, *(bn + act if self.order == "bn_act" else act + bn), *drop]

    def describe(self) -> str:
        return f"conv {self.k}x{self.k}->{self.out}" + (f" pad {self.pad}" if self.pad else "")

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        if d["dropout_kind"] == "element":  # the JSON of a spec from before the kind existed
            del d["dropout_kind"]
        return d

    @classmethod
    def examples(cls) -> tuple[Block, ...]:
        return (
            cls(8),
            cls(6, k=5, pad=2, bias=True, bn=False, act="gelu"),
            cls(5, k=1, order="act_bn", dropout=0.1, dropout_kind="channel"),
        )


@register_block
@dataclass(frozen=True)
class Pool(Block):
    """A 2x2 max-pool, stride 2 (``ceil`` keeps the odd last row and column)."""

    ceil: bool = False
    kind: ClassVar[str] = "pool"

    def __post_init__(self) -> None:
        check_bool("pool", "ceil", self.ceil)

    def out_channels(self, c_in: int) -> int:
        return c_in

    def out_size(self, size: int) -> int:
        return pool_out_size(size, self.ceil)

    def cost(self, c_in: int, size: int) -> tuple[int, int]:
        return 0, 0

    def receptive(self, rf: int, jump: int) -> tuple[int, int]:
        return rf + jump, jump * 2

    def layers(self, c_in: int) -> list[Layer]:
        return [Layer("MaxPool2d", (2, 2), (("ceil_mode", True),) if self.ceil else ())]

    def describe(self) -> str:
        return "max-pool 2x2" + (" (ceil)" if self.ceil else "")

    @classmethod
    def examples(cls) -> tuple[Block, ...]:
        return cls(), cls(ceil=True)


@register_block
@dataclass(frozen=True)
class Transition(Block):
    """Max-pool 2x2 and a 1x1 convolution to ``out`` channels, in either order."""

    out: int
    pool_first: bool = True
    bias: bool = False
    bn: bool = False
    act: str = "none"
    kind: ClassVar[str] = "transition"

    def __post_init__(self) -> None:
        check_int("transition", "out", self.out, 1, MAX_CHANNELS)
        check_bool("transition", "pool_first", self.pool_first)
        check_bool("transition", "bias", self.bias)
        check_bool("transition", "bn", self.bn)
        check_choice("transition", "act", self.act, ACTIVATIONS)

    def out_channels(self, c_in: int) -> int:
        return self.out

    def out_size(self, size: int) -> int:
        return pool_out_size(size, False)

    def cost(self, c_in: int, size: int) -> tuple[int, int]:
        params = self.out * c_in + (self.out if self.bias else 0) + (2 * self.out if self.bn else 0)
        conv_size = self.out_size(size) if self.pool_first else size
        return params, self.out * c_in * conv_size * conv_size

    def receptive(self, rf: int, jump: int) -> tuple[int, int]:
        return rf + jump, jump * 2

    def layers(self, c_in: int) -> list[Layer]:
        pool = Layer("MaxPool2d", (2, 2))
        conv = [Layer("Conv2d", (c_in, self.out), (("kernel_size", 1), ("bias", self.bias)))]
        conv += [Layer("BatchNorm2d", (self.out,))] if self.bn else []
        conv += act_layers(self.act)
        return [pool, *conv] if self.pool_first else [*conv, pool]

    def describe(self) -> str:
        return f"transition {'pool+1x1' if self.pool_first else '1x1+pool'}->{self.out}"

    @classmethod
    def examples(cls) -> tuple[Block, ...]:
        return cls(6), cls(7, pool_first=False, bias=True, bn=True, act="relu")


@register_block
@dataclass(frozen=True)
class Residual(Block):
    """``body(x) + shortcut(x)``; the shortcut is a 1x1 conv (``proj``) or the identity. The
    body: same-padded conv or sepconv blocks."""

    body: tuple[Block, ...]
    proj: bool = True
    bias: bool = False
    kind: ClassVar[str] = "residual"

    def __post_init__(self) -> None:
        if not isinstance(self.body, tuple) or not self.body:
            raise SpecError("residual: body must be a non-empty list of conv blocks")
        for conv in self.body:
            if getattr(conv, "kind", None) not in BODY_KINDS:
                raise SpecError(
                    f"residual: body may hold only conv and sepconv blocks, got {conv!r}"
                )
            if conv.pad != conv.k // 2:
                raise SpecError(
                    f"residual: body conv {conv.k}x{conv.k} must use pad {conv.k // 2} "
                    "so that the shortcut and the body have the same size"
                )
        check_bool("residual", "proj", self.proj)
        check_bool("residual", "bias", self.bias)

    @property
    def out(self) -> int:
        return self.body[-1].out

    def check_input(self, c_in: int) -> None:
        if not self.proj and self.out != c_in:
            raise SpecError(
                f"an identity shortcut needs {c_in} output channels, the body gives "
                f"{self.out}; set proj"
            )

    def out_channels(self, c_in: int) -> int:
        return self.out

    def out_size(self, size: int) -> int:
        return size  # every body conv is same-padded

    def cost(self, c_in: int, size: int) -> tuple[int, int]:
        params = macs = 0
        c = c_in
        for conv in self.body:
            p, m = conv.cost(c, size)
            params, macs, c = params + p, macs + m, conv.out
        if self.proj:
            params += self.out * c_in + (self.out if self.bias else 0)
            macs += self.out * c_in * size * size
        return params, macs

    def receptive(self, rf: int, jump: int) -> tuple[int, int]:
        for conv in self.body:
            rf, jump = conv.receptive(rf, jump)
        return rf, jump

    def layers(self, c_in: int) -> list[Layer]:
        body: list[Layer] = []
        c = c_in
        for conv in self.body:
            body += conv.layers(c)
            c = conv.out
        shortcut = (
            (Layer("Conv2d", (c_in, self.out), (("kernel_size", 1), ("bias", self.bias))),)
            if self.proj
            else ()
        )
        return [Layer("Residual", (tuple(body), shortcut))]

    def describe(self) -> str:
        inner = ", ".join(c.describe() for c in self.body)
        return f"residual[{inner}]" + (" +1x1" if self.proj else "")

    def to_dict(self) -> dict[str, Any]:
        body = [c.to_dict() for c in self.body]
        return {"kind": self.kind, "body": body, "proj": self.proj, "bias": self.bias}

    @classmethod
    def from_dict(cls, body: dict[str, Any]) -> Block:
        check_keys(cls.kind, body, *_field_names(cls))
        if not isinstance(body["body"], list):
            raise SpecError("residual: body must be a list of conv blocks")
        return cls(**{**body, "body": tuple(block_from_dict(c) for c in body["body"])})

    @classmethod
    def examples(cls) -> tuple[Block, ...]:
        return (
            cls((Conv(6, pad=1), Conv(8, pad=1)), proj=True, bias=True),
            cls((Conv(8, k=1), Conv(8, k=5, pad=2, dropout=0.1)), proj=False),
            cls((SepConv(10, pad=1), SepConv(8, k=5, pad=2)), proj=True),
        )


def _conv_layer(c_in: int, out: int, k: int, pad: int, *, stride: int = 1, groups: int = 1):
    kwargs: list[tuple[str, Any]] = [("kernel_size", k), ("padding", pad)]
    if stride != 1:
        kwargs.append(("stride", stride))
    if groups != 1:
        kwargs.append(("groups", groups))
    kwargs.append(("bias", False))
    return Layer("Conv2d", (c_in, out), tuple(kwargs))


def _bn_relu(c: int, relu: bool = True) -> list[Layer]:
    return [Layer("BatchNorm2d", (c,)), *([Layer("ReLU")] if relu else [])]


@register_block
@dataclass(frozen=True)
class SepConv(Block):
    """Depthwise-separable convolution: a k x k depthwise convolution (one filter per input
    channel), BatchNorm, ReLU, then a 1x1 convolution to ``out`` channels, BatchNorm, ReLU."""

    out: int
    k: int = 3
    pad: int = 0
    kind: ClassVar[str] = "sepconv"

    def __post_init__(self) -> None:
        check_int("sepconv", "out", self.out, 1, MAX_CHANNELS)
        check_int("sepconv", "k", self.k, 1, 7)
        if self.k % 2 == 0:
            raise SpecError(f"sepconv: kernel size must be odd, got {self.k}")
        check_int("sepconv", "pad", self.pad, 0, self.k // 2)

    def out_channels(self, c_in: int) -> int:
        return self.out

    def out_size(self, size: int) -> int:
        return conv_out_size(size, self.k, self.pad)

    def cost(self, c_in: int, size: int) -> tuple[int, int]:
        s = self.out_size(size)
        depthwise = c_in * self.k * self.k
        pointwise = c_in * self.out
        params = depthwise + 2 * c_in + pointwise + 2 * self.out
        return params, (depthwise + pointwise) * s * s

    def receptive(self, rf: int, jump: int) -> tuple[int, int]:
        return rf + (self.k - 1) * jump, jump

    def layers(self, c_in: int) -> list[Layer]:
        return [
            _conv_layer(c_in, c_in, self.k, self.pad, groups=c_in),
            *_bn_relu(c_in),
            _conv_layer(c_in, self.out, 1, 0),
            *_bn_relu(self.out),
        ]

    def describe(self) -> str:
        return f"sepconv {self.k}x{self.k}->{self.out}" + (f" pad {self.pad}" if self.pad else "")

    @classmethod
    def examples(cls) -> tuple[Block, ...]:
        return cls(12, pad=1), cls(6, k=5, pad=2), cls(10, k=7)


@register_block
@dataclass(frozen=True)
class MBConv(Block):
    """Inverted residual (MobileNetV2): a 1x1 expansion to ``expand`` x the input channels,
    BatchNorm, ReLU; a k x k depthwise convolution (same padding), BatchNorm, ReLU; a 1x1
    projection to ``out`` channels, BatchNorm; with ``skip`` (input channels = ``out``), the
    input added to the result."""

    out: int
    k: int = 3
    expand: int = 4
    skip: bool = False
    kind: ClassVar[str] = "mbconv"

    def __post_init__(self) -> None:
        check_int("mbconv", "out", self.out, 1, MAX_CHANNELS)
        check_int("mbconv", "k", self.k, 1, 7)
        if self.k % 2 == 0:
            raise SpecError(f"mbconv: kernel size must be odd, got {self.k}")
        check_int("mbconv", "expand", self.expand, 1, 8)
        check_bool("mbconv", "skip", self.skip)

    def check_input(self, c_in: int) -> None:
        if self.skip and c_in != self.out:
            raise SpecError(
                f"a skip needs {c_in} output channels, the block gives {self.out}; drop skip"
            )

    def out_channels(self, c_in: int) -> int:
        return self.out

    def out_size(self, size: int) -> int:
        return size

    def cost(self, c_in: int, size: int) -> tuple[int, int]:
        hidden = c_in * self.expand
        weights = c_in * hidden + hidden * self.k * self.k + hidden * self.out
        params = weights + 2 * hidden + 2 * hidden + 2 * self.out
        return params, weights * size * size

    def receptive(self, rf: int, jump: int) -> tuple[int, int]:
        return rf + (self.k - 1) * jump, jump

    def layers(self, c_in: int) -> list[Layer]:
        hidden = c_in * self.expand
        body = [
            _conv_layer(c_in, hidden, 1, 0),
            *_bn_relu(hidden),
            _conv_layer(hidden, hidden, self.k, self.k // 2, groups=hidden),
            *_bn_relu(hidden),
            _conv_layer(hidden, self.out, 1, 0),
            *_bn_relu(self.out, relu=False),
        ]
        return [Layer("Residual", (tuple(body), ()))] if self.skip else body

    def describe(self) -> str:
        skip = " +skip" if self.skip else ""
        return f"mbconv {self.k}x{self.k} x{self.expand}->{self.out}{skip}"

    @classmethod
    def examples(cls) -> tuple[Block, ...]:
        return cls(8, skip=True), cls(12, k=5, expand=2), cls(8, k=1, expand=1, skip=True)


@register_block
@dataclass(frozen=True)
class SqueezeExcite(Block):
    """Squeeze-excitation: the channels rescaled by a gate computed from their global
    average (1x1 convolution to ``channels / reduction``, ReLU, 1x1 convolution back,
    sigmoid)."""

    reduction: int = 4
    kind: ClassVar[str] = "se"

    def __post_init__(self) -> None:
        check_int("se", "reduction", self.reduction, 1, 64)

    def hidden(self, c_in: int) -> int:
        return max(1, c_in // self.reduction)

    def out_channels(self, c_in: int) -> int:
        return c_in

    def out_size(self, size: int) -> int:
        return size

    def cost(self, c_in: int, size: int) -> tuple[int, int]:
        h = self.hidden(c_in)
        return c_in * h + h + h * c_in + c_in, 2 * c_in * h

    def receptive(self, rf: int, jump: int) -> tuple[int, int]:
        return rf, jump  # a global gate: each output pixel still sees what it saw

    def layers(self, c_in: int) -> list[Layer]:
        h = self.hidden(c_in)
        gate = (
            Layer("AdaptiveAvgPool2d", (1,)),
            Layer("Conv2d", (c_in, h), (("kernel_size", 1),)),
            Layer("ReLU"),
            Layer("Conv2d", (h, c_in), (("kernel_size", 1),)),
            Layer("Sigmoid"),
        )
        return [Layer("SqueezeExcite", (gate,))]

    def describe(self) -> str:
        return f"se /{self.reduction}"

    @classmethod
    def examples(cls) -> tuple[Block, ...]:
        return cls(), cls(reduction=2)


@register_block
@dataclass(frozen=True)
class StridedConv(Block):
    """A k x k convolution with stride 2 (same padding) to ``out`` channels, BatchNorm, ReLU:
    a learned downsampling, the alternative to a max-pool transition."""

    out: int
    k: int = 3
    kind: ClassVar[str] = "strided"

    def __post_init__(self) -> None:
        check_int("strided", "out", self.out, 1, MAX_CHANNELS)
        check_int("strided", "k", self.k, 1, 7)
        if self.k % 2 == 0:
            raise SpecError(f"strided: kernel size must be odd, got {self.k}")

    def out_channels(self, c_in: int) -> int:
        return self.out

    def out_size(self, size: int) -> int:
        return (size + 2 * (self.k // 2) - self.k) // 2 + 1

    def cost(self, c_in: int, size: int) -> tuple[int, int]:
        weights = self.out * c_in * self.k * self.k
        s = self.out_size(size)
        return weights + 2 * self.out, weights * s * s

    def receptive(self, rf: int, jump: int) -> tuple[int, int]:
        return rf + (self.k - 1) * jump, jump * 2

    def layers(self, c_in: int) -> list[Layer]:
        return [_conv_layer(c_in, self.out, self.k, self.k // 2, stride=2), *_bn_relu(self.out)]

    def describe(self) -> str:
        return f"strided conv {self.k}x{self.k}/2->{self.out}"

    @classmethod
    def examples(cls) -> tuple[Block, ...]:
        return cls(8), cls(6, k=1), cls(10, k=5)
