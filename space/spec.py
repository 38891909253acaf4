"""The architecture spec: a frozen, validated table of blocks that everything else derives from.

An ``ArchSpec`` is a flat sequence of blocks followed by a head. Counting, building, rendering
to source and storing as JSON are all pure functions of it, so a spec read back from a study
months later rebuilds exactly the network that was trained.

Block kinds live in ``BLOCK_KINDS`` (a registry, like timm's ``register_model``): adding a
kind there makes the JSON loader, the counters and the parametrized tests pick it up.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from budgetnas.space import checks
from budgetnas.space.blocks import (
    BLOCK_KINDS,
    ORDERS,
    Block,
    Conv,
    Layer,
    Pool,
    Residual,
    Transition,
    act_layers,
    block_from_dict,
    conv_out_size,
    plain,
    pool_out_size,
    register_block,
)
from budgetnas.space.checks import ACTIVATIONS, MAX_CHANNELS, SpecError

__all__ = [
    "ACTIVATIONS",
    "BLOCK_KINDS",
    "HEAD_KINDS",
    "ORDERS",
    "ArchSpec",
    "Block",
    "Conv",
    "Head",
    "Pool",
    "Residual",
    "SpecError",
    "Transition",
    "conv_out_size",
    "pool_out_size",
    "register_block",
]

HEAD_KINDS = ("conv_gap", "fc")


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
        checks.check_choice("head", "kind", self.kind, HEAD_KINDS)
        checks.check_int("head", "k", self.k, 1, 7)
        if self.k % 2 == 0:
            raise SpecError(f"head: kernel size must be odd, got {self.k}")
        checks.check_int("head", "pad", self.pad, 0, self.k // 2)
        checks.check_bool("head", "bias", self.bias)
        if not isinstance(self.hidden, tuple):
            raise SpecError(f"head: hidden must be a list of layer widths, got {self.hidden!r}")
        for h in self.hidden:
            checks.check_int("head", "hidden width", h, 1, MAX_CHANNELS)
        checks.check_int("head", "pool_to", self.pool_to, 1, 64)
        checks.check_choice("head", "act", self.act, ACTIVATIONS)
        checks.check_prob("head", "dropout", self.dropout)
        if self.kind == "conv_gap" and self.hidden:
            raise SpecError("head: a conv_gap head has no hidden layers; use kind 'fc'")

    def check_input(self, size: int) -> None:
        if self.kind == "conv_gap" and conv_out_size(size, self.k, self.pad) < 1:
            raise SpecError(
                f"head conv {self.k}x{self.k} does not fit the {size}x{size} feature map; "
                "use a smaller kernel or padding"
            )

    def cost(self, c_in: int, size: int, classes: int) -> tuple[int, int]:
        """(parameters, multiply-accumulates per image) on a c_in x size x size feature map."""
        if self.kind == "conv_gap":
            out = conv_out_size(size, self.k, self.pad)
            weights = classes * c_in * self.k * self.k
            return weights + (classes if self.bias else 0), weights * out * out
        params = macs = 0
        width = c_in * self.pool_to * self.pool_to
        for h in (*self.hidden, classes):
            params += width * h + (h if self.bias else 0)
            macs += width * h
            width = h
        return params, macs

    def receptive(self, rf: int, jump: int) -> tuple[int, int]:
        return (rf + (self.k - 1) * jump if self.kind == "conv_gap" else rf), jump

    def layers(self, c_in: int, size: int, classes: int) -> list[Layer]:
        if self.kind == "conv_gap":
            conv = (("kernel_size", self.k), ("padding", self.pad), ("bias", self.bias))
            return [
                Layer("Conv2d", (c_in, classes), conv),
                Layer("AdaptiveAvgPool2d", (1,)),
                Layer("Flatten"),
            ]
        pool = [] if size == self.pool_to else [Layer("AdaptiveAvgPool2d", (self.pool_to,))]
        layers = [*pool, Layer("Flatten")]
        width = c_in * self.pool_to * self.pool_to
        for h in self.hidden:
            layers.append(Layer("Linear", (width, h), (("bias", self.bias),)))
            layers += act_layers(self.act)
            if self.dropout:
                layers.append(Layer("Dropout", (self.dropout,)))
            width = h
        layers.append(Layer("Linear", (width, classes), (("bias", self.bias),)))
        return layers

    def describe(self) -> str:
        if self.kind == "conv_gap":
            return f"conv {self.k}x{self.k}->classes + GAP"
        pool = "GAP" if self.pool_to == 1 else f"pool to {self.pool_to}x{self.pool_to}"
        return f"{pool} + fc" + "".join(f"->{h}" for h in self.hidden) + "->classes"

    @classmethod
    def from_dict(cls, data: Any) -> Head:
        if not isinstance(data, dict):
            raise SpecError(f"head must be a JSON object, got {data!r}")
        checks.check_keys("head", data, {f.name for f in fields(cls)}, required=set())
        kwargs = dict(data)
        if "hidden" in kwargs:
            if not isinstance(kwargs["hidden"], list):
                raise SpecError("head: hidden must be a list of layer widths")
            kwargs["hidden"] = tuple(kwargs["hidden"])
        return cls(**kwargs)


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
        checks.check_int("spec", "in_channels", self.in_channels, 1, 16)
        checks.check_int("spec", "input_size", self.input_size, 1, 1024)
        checks.check_int("spec", "num_classes", self.num_classes, 2, 100_000)
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

    def shapes(self) -> list[tuple[int, int]]:
        """(channels, size) entering each block, then the one entering the head; validates."""
        channels, size = self.in_channels, self.input_size
        walk = [(channels, size)]
        for i, block in enumerate(self.blocks, 1):
            try:
                block.check_input(channels)
            except SpecError as err:
                raise SpecError(f"block {i} ({block.describe()}): {err}") from None
            channels, size = block.out_channels(channels), block.out_size(size)
            if size < 1:
                raise SpecError(
                    f"feature map shrinks to {max(size, 0)}x{max(size, 0)} after block {i} "
                    f"({block.describe()}); add padding or remove a block before it"
                )
            walk.append((channels, size))
        self.head.check_input(size)
        return walk

    def feature_shape(self) -> tuple[int, int]:
        """(channels, size) of the feature map that enters the head; validates on the way."""
        return self.shapes()[-1]

    # ---- JSON ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain data; every block carries its ``kind``. Canonical: equal specs, equal dicts."""
        return {
            "blocks": [b.to_dict() for b in self.blocks],
            "head": plain(asdict(self.head)),
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
        checks.check_keys("spec", data, {f.name for f in fields(cls)}, required={"blocks"})
        blocks = data["blocks"]
        if not isinstance(blocks, list):
            raise SpecError("spec: blocks must be a list")
        kwargs: dict[str, Any] = {k: v for k, v in data.items() if k not in ("blocks", "head")}
        if "norm" in kwargs:
            if not isinstance(kwargs["norm"], list):
                raise SpecError("spec: norm must be a list [mean, std]")
            kwargs["norm"] = tuple(kwargs["norm"])
        head = Head.from_dict(data["head"]) if "head" in data else Head()
        return cls(blocks=tuple(block_from_dict(b) for b in blocks), head=head, **kwargs)

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
