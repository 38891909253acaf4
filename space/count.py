"""Exact parameter count, MACs, shapes and receptive field of a spec, without torch.

These run in microseconds, so the search can check the hard parameter cap on every candidate
before anything is built. ``tests/space`` checks them against the built module and fvcore.

MACs are multiply-accumulates of the convolutions and linear layers for one image (the
convention of fvcore's ``FlopCountAnalysis`` for those operators); BatchNorm, pooling and
activations are not counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from budgetnas.space.spec import (
    ArchSpec,
    Conv,
    Pool,
    Residual,
    Transition,
    conv_out_size,
    pool_out_size,
)


@dataclass(frozen=True)
class LayerStats:
    """One block (or the head) of a spec: what goes in, what comes out, what it costs."""

    index: int  # 1-based block number; 0 for the head
    name: str
    in_shape: tuple[int, int, int]  # (C, H, W)
    out_shape: tuple[int, int, int]
    params: int
    macs: int
    receptive_field: int  # of one output pixel, in input pixels


@dataclass(frozen=True)
class Analysis:
    layers: tuple[LayerStats, ...]
    params: int
    macs: int
    receptive_field: int  # of one pixel of the last feature map (before global pooling)


def _conv_cost(c_in: int, conv: Conv, size: int) -> tuple[int, int, int]:
    """(params, macs, out_size) of a Conv block on a c_in x size x size map."""
    out = conv_out_size(size, conv.k, conv.pad)
    weights = conv.out * c_in * conv.k * conv.k
    params = weights + (conv.out if conv.bias else 0) + (2 * conv.out if conv.bn else 0)
    return params, weights * out * out, out


def _head_cost(spec: ArchSpec, c_in: int, size: int) -> tuple[int, int]:
    head, classes = spec.head, spec.num_classes
    if head.kind == "conv_gap":
        out = conv_out_size(size, head.k, head.pad)
        weights = classes * c_in * head.k * head.k
        return weights + (classes if head.bias else 0), weights * out * out
    params = macs = 0
    width = c_in * head.pool_to * head.pool_to
    for h in (*head.hidden, classes):
        params += width * h + (h if head.bias else 0)
        macs += width * h
        width = h
    return params, macs


@lru_cache(maxsize=65536)
def analyze(spec: ArchSpec) -> Analysis:
    """Walk the spec once and account for every block and the head."""
    c, s = spec.in_channels, spec.input_size
    rf, jump = 1, 1
    layers: list[LayerStats] = []
    for i, block in enumerate(spec.blocks, 1):
        c0, s0 = c, s
        if isinstance(block, Conv):
            params, macs, s = _conv_cost(c, block, s)
            c, rf = block.out, rf + (block.k - 1) * jump
        elif isinstance(block, Pool):
            params, macs = 0, 0
            s, rf, jump = pool_out_size(s, block.ceil), rf + jump, jump * 2
        elif isinstance(block, Transition):
            pooled = pool_out_size(s, False)
            params = block.out * c + (block.out if block.bias else 0)
            params += 2 * block.out if block.bn else 0
            macs = block.out * c * (pooled * pooled if block.pool_first else s * s)
            c, s, rf, jump = block.out, pooled, rf + jump, jump * 2
        elif isinstance(block, Residual):
            params = macs = 0
            for conv in block.body:
                p, m, s = _conv_cost(c, conv, s)
                params, macs, c = params + p, macs + m, conv.out
                rf += (conv.k - 1) * jump
            if block.proj:
                params += block.out * c0 + (block.out if block.bias else 0)
                macs += block.out * c0 * s * s
        else:  # pragma: no cover - ArchSpec validation admits only the kinds above
            raise TypeError(block)
        layers.append(LayerStats(i, block.describe(), (c0, s0, s0), (c, s, s), params, macs, rf))
    head_params, head_macs = _head_cost(spec, c, s)
    head_rf = rf + (spec.head.k - 1) * jump if spec.head.kind == "conv_gap" else rf
    layers.append(
        LayerStats(
            0,
            spec.head.describe(),
            (c, s, s),
            (spec.num_classes, 1, 1),
            head_params,
            head_macs,
            head_rf,
        )
    )
    return Analysis(
        layers=tuple(layers),
        params=sum(layer.params for layer in layers),
        macs=sum(layer.macs for layer in layers),
        receptive_field=head_rf,
    )


def count_params(spec: ArchSpec) -> int:
    return analyze(spec).params


def count_macs(spec: ArchSpec) -> int:
    return analyze(spec).macs


def receptive_field(spec: ArchSpec) -> int:
    return analyze(spec).receptive_field
