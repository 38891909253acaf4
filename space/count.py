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

from budgetnas.space.spec import ArchSpec


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


@lru_cache(maxsize=65536)
def analyze(spec: ArchSpec) -> Analysis:
    """Walk the spec once and account for every block and the head."""
    walk = spec.shapes()
    rf, jump = 1, 1
    layers: list[LayerStats] = []
    steps = zip(spec.blocks, walk[:-1], walk[1:], strict=True)
    for i, (block, (c, s), (c_out, s_out)) in enumerate(steps, 1):
        params, macs = block.cost(c, s)
        rf, jump = block.receptive(rf, jump)
        layers.append(
            LayerStats(i, block.describe(), (c, s, s), (c_out, s_out, s_out), params, macs, rf)
        )
    c, s = walk[-1]
    params, macs = spec.head.cost(c, s, spec.num_classes)
    rf, _ = spec.head.receptive(rf, jump)
    shape = (spec.num_classes, 1, 1)
    layers.append(LayerStats(0, spec.head.describe(), (c, s, s), shape, params, macs, rf))
    return Analysis(
        layers=tuple(layers),
        params=sum(layer.params for layer in layers),
        macs=sum(layer.macs for layer in layers),
        receptive_field=rf,
    )


def count_params(spec: ArchSpec) -> int:
    return analyze(spec).params


def count_macs(spec: ArchSpec) -> int:
    return analyze(spec).macs


def receptive_field(spec: ArchSpec) -> int:
    return analyze(spec).receptive_field
