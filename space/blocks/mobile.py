"""The block kinds of the rich space: depthwise-separable and inverted-residual (MBConv)
convolutions, squeeze-excitation, and a strided convolution as a transition."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from budgetnas.space.blocks.base import Block, Layer, conv_out_size, register_block
from budgetnas.space.checks import (
    MAX_CHANNELS,
    SpecError,
    check_bool,
    check_int,
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
