"""Counts from the spec alone against the built module and fvcore, on 200 random specs + zoo."""

from __future__ import annotations

import random

import pytest
import torch

from budgetnas.space.build import build
from budgetnas.space.count import analyze
from budgetnas.space.zoo import ZOO
from tests.helpers import random_spec

fvcore_nn = pytest.importorskip("fvcore.nn")

RANDOM_SPECS = [random_spec(random.Random(seed)) for seed in range(200)]
CASES = [(f"zoo-{k}", e.spec) for k, e in sorted(ZOO.items())] + [
    (f"random-{i}", s) for i, s in enumerate(RANDOM_SPECS)
]
MAC_OPS = {"conv", "linear", "addmm", "matmul"}
OTHER_OPS = {"batch_norm", "adaptive_avg_pool2d"}  # counted by fvcore, not MACs


@pytest.mark.parametrize("name, spec", CASES, ids=[c[0] for c in CASES])
def test_params_and_macs_match_module_and_fvcore(name, spec):
    torch.manual_seed(0)
    net = build(spec).eval()
    stats = analyze(spec)
    assert stats.params == sum(p.numel() for p in net.parameters())
    assert stats.params == fvcore_nn.parameter_count(net)[""]
    x = torch.rand(1, spec.in_channels, spec.input_size, spec.input_size)
    flops = fvcore_nn.FlopCountAnalysis(net, x)
    flops.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    by_op = flops.by_operator()
    assert set(by_op) <= MAC_OPS | OTHER_OPS
    assert stats.macs == sum(v for k, v in by_op.items() if k in MAC_OPS)


def test_random_specs_cover_both_head_kinds_and_residuals():
    heads = {s.head.kind for s in RANDOM_SPECS}
    assert heads == {"conv_gap", "fc"}
    assert any(b.kind == "residual" for s in RANDOM_SPECS for b in s.blocks)


@pytest.mark.parametrize("name, spec", CASES[:40], ids=[c[0] for c in CASES[:40]])
def test_output_shape_matches_the_walk(name, spec):
    net = build(spec).eval()
    stats = analyze(spec)
    x = torch.rand(2, spec.in_channels, spec.input_size, spec.input_size)
    with torch.no_grad():
        feats = net.features((x - spec.norm[0]) / spec.norm[1])
        out = net(x)
    head_in = stats.layers[-1].in_shape
    assert tuple(feats.shape[1:]) == head_in
    assert tuple(out.shape) == (2, spec.num_classes)


def test_receptive_field_of_seed_000():
    # 3x3, 3x3 (5), 1x1+pool (6, jump 2), 3x3 (10), 3x3 (14), 3x3 (18), head 3x3 (22)
    assert analyze(ZOO["000"].spec).receptive_field == 22
    assert [layer.receptive_field for layer in analyze(ZOO["000"].spec).layers] == [
        3,
        5,
        6,
        10,
        14,
        18,
        22,
    ]
