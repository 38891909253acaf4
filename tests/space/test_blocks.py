"""Every registered block kind, through every reader of the protocol (count, build, render,
JSON): parametrized over ``BLOCK_KINDS``, so a new kind is tested by adding it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch

from budgetnas.space.blocks import BLOCK_KINDS, Block, Layer, register_block
from budgetnas.space.build import build
from budgetnas.space.count import analyze
from budgetnas.space.render import render
from budgetnas.space.spec import ArchSpec, Conv, Head

fvcore_nn = pytest.importorskip("fvcore.nn")

CASES = [
    (f"{kind}-{i}", example)
    for kind, cls in sorted(BLOCK_KINDS.items())
    for i, example in enumerate(cls.examples())
]


def _spec(block: Block) -> ArchSpec:
    """The block between an 8-channel padded conv and a 4-channel one."""
    return ArchSpec(blocks=(Conv(8, pad=1), block, Conv(4, pad=1)), head=Head())


def _macs(net: torch.nn.Module, x: torch.Tensor) -> int:
    flops = fvcore_nn.FlopCountAnalysis(net, x)
    flops.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return sum(v for k, v in flops.by_operator().items() if k in {"conv", "linear", "addmm"})


def test_every_kind_has_examples():
    for cls in BLOCK_KINDS.values():
        assert len(cls.examples()) >= 2
        assert all(type(e) is cls for e in cls.examples())


@pytest.mark.parametrize("name, block", CASES, ids=[c[0] for c in CASES])
def test_block_cost_and_shape_match_the_built_module(name, block):
    spec = _spec(block)
    torch.manual_seed(0)
    net = build(spec).eval()
    stats = analyze(spec)
    c_in = 8
    expected_params = sum(p.numel() for p in net.parameters())
    assert stats.params == expected_params == fvcore_nn.parameter_count(net)[""]
    x = torch.rand(1, 1, 28, 28)
    assert stats.macs == _macs(net, x)
    # the block's own row: its output shape is what its layers produce
    row = stats.layers[1]
    assert row.in_shape[0] == c_in and row.out_shape[0] == block.out_channels(c_in)
    with torch.no_grad():
        feats = net.features[: len(spec.blocks[0].layers(1)) + len(block.layers(c_in))](
            (x - spec.norm[0]) / spec.norm[1]
        )
    assert tuple(feats.shape[1:]) == row.out_shape


@pytest.mark.parametrize("name, block", CASES, ids=[c[0] for c in CASES])
def test_block_round_trips_and_renders_to_the_built_module(name, block):
    spec = _spec(block)
    assert ArchSpec.from_json(spec.to_json()) == spec
    torch.manual_seed(0)
    built = build(spec).eval()
    ns: dict = {"__file__": "/nonexistent/net.py", "__name__": "rendered"}
    exec(compile(render(spec), "rendered.py", "exec"), ns)
    net = ns["Net"]().eval()
    net.load_state_dict(built.state_dict())
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(net(x), built(x))


@dataclass(frozen=True)
class _AvgPool(Block):
    """A kind defined only here: average pooling 2x2."""

    kind: ClassVar[str] = "avgpool"

    def out_channels(self, c_in: int) -> int:
        return c_in

    def out_size(self, size: int) -> int:
        return size // 2

    def cost(self, c_in: int, size: int) -> tuple[int, int]:
        return 0, 0

    def receptive(self, rf: int, jump: int) -> tuple[int, int]:
        return rf + jump, jump * 2

    def layers(self, c_in: int) -> list[Layer]:
        return [Layer("AvgPool2d", (2,))]

    def describe(self) -> str:
        return "avg-pool 2x2"

    @classmethod
    def examples(cls) -> tuple[Block, ...]:
        return (cls(),)


@pytest.fixture
def avgpool_kind():
    register_block(_AvgPool)
    yield _AvgPool
    del BLOCK_KINDS["avgpool"]


def test_a_new_kind_is_one_class_and_one_registry_line(avgpool_kind):
    spec = ArchSpec(blocks=(Conv(8), avgpool_kind(), Conv(8)), head=Head(kind="conv_gap"))
    assert '"kind": "avgpool"' in spec.to_json()
    assert ArchSpec.from_json(spec.to_json()) == spec
    stats = analyze(spec)
    assert stats.layers[1].out_shape == (8, 13, 13)
    assert stats.params == sum(p.numel() for p in build(spec).parameters())
    assert "nn.AvgPool2d(2)" in render(spec)
    with pytest.raises(ValueError, match="registered twice"):
        register_block(avgpool_kind)
