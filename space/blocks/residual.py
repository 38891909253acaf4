"""A residual block: a body of plain or depthwise-separable convolutions with a shortcut."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from budgetnas.space.blocks.base import (
    BODY_KINDS,
    Block,
    Layer,
    block_from_dict,
    field_names,
    register_block,
)
from budgetnas.space.blocks.basic import Conv
from budgetnas.space.checks import (
    SpecError,
    check_bool,
    check_keys,
)


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
        check_keys(cls.kind, body, *field_names(cls))
        if not isinstance(body["body"], list):
            raise SpecError("residual: body must be a list of conv blocks")
        return cls(**{**body, "body": tuple(block_from_dict(c) for c in body["body"])})

    @classmethod
    def examples(cls) -> tuple[Block, ...]:
        from budgetnas.space.blocks.mobile import SepConv  # registered after this kind

        return (
            cls((Conv(6, pad=1), Conv(8, pad=1)), proj=True, bias=True),
            cls((Conv(8, k=1), Conv(8, k=5, pad=2, dropout=0.1)), proj=False),
            cls((SepConv(10, pad=1), SepConv(8, k=5, pad=2)), proj=True),
        )
