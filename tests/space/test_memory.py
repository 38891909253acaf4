"""Peak activation memory from the spec against a run of the built module.

The measurement records, with forward hooks, which tensors (by storage) every layer of the
real module reads and writes, in the order they run, keeps every tensor so no storage is
reused, then computes liveness from that trace alone: a tensor is alive from the layer that
writes it to the last layer that reads it. As a deployed runtime does, a BatchNorm right after
a convolution and a ReLU right after a convolution or linear layer (or that BatchNorm) write
into the tensor of the layer before them. Nothing of ``space.memory`` is used.
``tests/search/test_deploy.py`` checks the same figures against onnxruntime's int8 models.
"""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn

from budgetnas.space.blocks import BLOCK_KINDS
from budgetnas.space.build import Residual, SqueezeExcite, build
from budgetnas.space.memory import FLOAT32, INT8, activation_memory
from budgetnas.space.spec import ArchSpec, Conv, Head, Pool, Transition
from budgetnas.space.zoo import ZOO
from tests.helpers import random_spec


def measure(spec: ArchSpec) -> tuple[list[int], int]:
    """(peak per block and head, overall peak) in elements, from a traced run."""
    net = build(spec).eval()
    events: list[tuple[str, list[torch.Tensor], torch.Tensor]] = []
    kinds: list[type] = []
    parts: dict[nn.Module, dict[str, torch.Tensor]] = {}
    hooks = []

    def leaf_hook(name):
        def hook(module, inputs, output):
            events.append((name, [inputs[0]], output))
            kinds.append(type(module))

        return hook

    for name, module in net.named_modules():
        if isinstance(module, SqueezeExcite):
            slot = parts.setdefault(module, {})
            hooks.append(module.gate.register_forward_hook(lambda m, i, o, s=slot: s.update(g=o)))

            def scaled(m, i, o, s=slot, n=name) -> None:  # the product: reads x and the gate
                events.append((n, [i[0], s["g"]], o))
                kinds.append(SqueezeExcite)

            hooks.append(module.register_forward_hook(scaled))
        elif isinstance(module, Residual):
            slot = parts.setdefault(module, {})
            hooks.append(
                module.body.register_forward_hook(lambda m, i, o, s=slot: s.update(body=o))
            )
            hooks.append(
                module.shortcut.register_forward_hook(lambda m, i, o, s=slot: s.update(short=o))
            )

            def added(m, i, o, s=slot, n=name) -> None:  # the sum: reads both summands
                events.append((n, [s["body"], s["short"]], o))
                kinds.append(Residual)

            hooks.append(module.register_forward_hook(added))
        elif not list(module.children()):
            hooks.append(module.register_forward_hook(leaf_hook(name)))
    x = torch.rand(1, spec.in_channels, spec.input_size, spec.input_size)
    with torch.no_grad():
        net(x)
    for h in hooks:
        h.remove()

    alias: dict[int, int] = {}  # a fused layer's output -> the tensor it writes into

    def key(t: torch.Tensor) -> int:
        k = t.untyped_storage().data_ptr()
        return alias.get(k, k)

    chain = None  # the kind of fusing layer whose output the last event wrote
    for i, ((_, inputs, output), kind) in enumerate(zip(events, kinds, strict=True)):
        follows = i and key(inputs[0]) == key(events[i - 1][2])
        if follows and kind is nn.BatchNorm2d and chain is nn.Conv2d:
            alias[output.untyped_storage().data_ptr()] = key(inputs[0])
            chain = "conv+bn"
        elif follows and kind is nn.ReLU and chain is not None:
            alias[output.untyped_storage().data_ptr()] = key(inputs[0])
            chain = None
        else:
            chain = kind if kind in (nn.Conv2d, nn.Linear) else None

    size: dict[int, int] = {}
    born: dict[int, int] = {}
    last: dict[int, int] = {}
    for i, (_, inputs, output) in enumerate(events):
        for t in inputs:
            size.setdefault(key(t), t.numel())
            born.setdefault(key(t), -1)  # the network's input
            last[key(t)] = i
        if key(output) not in born:
            born[key(output)] = i
            size[key(output)] = output.numel()
            last.setdefault(key(output), i)
    live = [
        sum(size[k] for k in size if born[k] <= i <= max(last[k], born[k]))
        for i in range(len(events))
    ]
    # events -> blocks: a block's layers are consecutive modules of net.features
    owner = []
    offsets, c = [], spec.in_channels
    for block in spec.blocks:
        offsets.append(len(block.layers(c)))
        c = block.out_channels(c)
    bounds = [sum(offsets[:j]) for j in range(len(offsets) + 1)]
    for name, _, _ in events:
        parts_ = name.split(".")
        if parts_[0] == "head":
            owner.append(len(spec.blocks))
        else:
            index = int(parts_[1])
            owner.append(next(j for j in range(len(offsets)) if index < bounds[j + 1]))
    per_block = [
        max(v for v, o in zip(live, owner, strict=True) if o == j)
        for j in range(len(spec.blocks) + 1)
    ]
    return per_block, max(live)


CASES = (
    [(f"zoo-{k}", e.spec) for k, e in sorted(ZOO.items())]
    + [
        (f"{kind}-{i}", ArchSpec(blocks=(Conv(8, pad=1), ex, Conv(4, pad=1)), head=Head()))
        for kind, cls in sorted(BLOCK_KINDS.items())
        for i, ex in enumerate(cls.examples())
    ]
    + [(f"random-{i}", random_spec(random.Random(500 + i))) for i in range(60)]
)


@pytest.mark.parametrize("name, spec", CASES, ids=[c[0] for c in CASES])
def test_peak_matches_a_traced_run_of_the_module(name, spec):
    per_block, peak = measure(spec)
    stats = activation_memory(spec)
    assert stats.peak == peak
    assert list(stats.blocks) == per_block


def test_seed_001_by_hand():
    # conv 1->10 pad 1 at 28x28 with its ReLU: input 784 + output 7,840; then the BatchNorm
    # after the ReLU (not foldable) reads 7,840 and writes 7,840
    stats = activation_memory(ZOO["001"].spec)
    assert stats.blocks[0] == 7_840 * 2
    assert stats.peak == 16 * 784 * 2  # conv 2's BatchNorm at 16 x 28 x 28, in and out
    assert stats.bytes(FLOAT32) == 4 * stats.peak and stats.bytes(INT8) == stats.peak


def test_seed_004_fused():
    # conv 1->12 pad 1, BatchNorm and ReLU fused: 784 in + 9,408 out; the max-pool reads
    # 9,408 and writes 2,352: 11,760 bytes at int8 (unfused it was 18,816: the BN and the
    # ReLU each wrote a 9,408-element tensor beside their input)
    stats = activation_memory(ZOO["004"].spec)
    assert stats.blocks[:2] == (784 + 9_408, 9_408 + 2_352)
    assert stats.bytes(INT8) == 11_760


def test_a_residual_holds_its_input_for_the_shortcut():
    block = BLOCK_KINDS["residual"]
    spec = ArchSpec(
        blocks=(
            Conv(8, pad=1, bn=False, act="none"),
            block((Conv(8, pad=1, bn=False, act="none"),)),
        ),
        head=Head(),
    )
    m = 8 * 28 * 28
    # 1x1 shortcut first: x + short = 2m; the body conv: x + its output + short = 3m; the sum:
    # body + short + sum = 3m
    assert activation_memory(spec).blocks[1] == 3 * m
    spec_pool = ArchSpec(blocks=(Conv(8, pad=1), Pool(), Transition(4)), head=Head())
    assert activation_memory(spec_pool).blocks[1] == m + m // 4
