"""The plain block kinds: a convolution, a max-pool, and a transition (max-pool + 1x1 conv)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from budgetnas.space.blocks.base import (
    DROPOUT_KINDS,
    DROPOUT_LAYERS,
    ORDERS,
    Block,
    Layer,
    act_layers,
    conv_out_size,
    pool_out_size,
    register_block,
)
from budgetnas.space.checks import (
    ACTIVATIONS,
    MAX_CHANNELS,
    SpecError,
    check_bool,
    check_choice,
    check_int,
    check_prob,
)


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
