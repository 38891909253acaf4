"""Seeds of one network fused into one model (trainers/fused.py), on a CPU.

Tolerances: float rounding only (grouped kernels add in another order than the separate
ones). One forward and backward pass of any block kind: outputs within 1e-5 and gradients
within 1e-4 (relative to their scale, at least 1). A short training of 3 fused seeds against
3 separate ``train`` calls: losses within 1e-4 relative, validation curves within 0.01 (1
image in 100), weights within 1e-3 absolute (5e-3 in bf16). Over a long training such
differences grow as any two float orders of one training do; they are noise, not drift.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

import budgetnas.trainers.fused as fused_module
from budgetnas.space.blocks import BLOCK_KINDS, Block, Conv, Layer
from budgetnas.space.build import build
from budgetnas.space.spec import ArchSpec, Head
from budgetnas.space.zoo import ZOO
from budgetnas.trainers.data import load_train_val
from budgetnas.trainers.fused import (
    FuseError,
    check_fusable,
    fuse_models,
    fuse_seeds_by_default,
    split_model,
    train_fused,
)
from budgetnas.trainers.train import TrainingError, seeded, train
from tests.trainers.reference import BASE, SPEC

SEEDS = [0, 1, 2]
CASES = [
    (f"{kind}-{i}", example)
    for kind, cls in sorted(BLOCK_KINDS.items())
    for i, example in enumerate(cls.examples())
]


@pytest.fixture(scope="module")
def data(synthetic_root):
    return load_train_val("mnist", data_dir=synthetic_root, val_size=100, train_subset=192)


def _nets_and_streams(spec: ArchSpec, seeds: list[int]):
    nets, states = [], []
    for seed in seeds:
        with seeded(seed, torch.device("cpu")):
            nets.append(build(spec))
            states.append(torch.random.default_generator.get_state())
    return nets, states


def _close(a: torch.Tensor, b: torch.Tensor, tol: float) -> bool:
    scale = max(1.0, float(b.abs().max()))
    return float((a - b).abs().max()) <= tol * scale


@pytest.mark.parametrize("head", [Head(hidden=(12,), dropout=0.2), Head(kind="conv_gap", k=3)])
@pytest.mark.parametrize("name, block", CASES, ids=[c[0] for c in CASES])
def test_every_block_kind_fuses_into_the_same_outputs_and_gradients(name, block, head):
    """Between an 8-channel conv with element dropout and the head: 3 copies fused give each
    copy's training-mode outputs (dropout masks included) and gradients."""
    spec = ArchSpec(blocks=(Conv(8, pad=1, dropout=0.1), block), head=head)
    check_fusable(spec)
    nets, states = _nets_and_streams(spec, SEEDS)
    streams = [torch.Generator().set_state(s) for s in states]
    fused = fuse_models(spec, nets, generators=streams)
    x = torch.rand(4, 3, 28, 28, generator=torch.Generator().manual_seed(5))
    y = torch.randint(0, 10, (4, 3), generator=torch.Generator().manual_seed(6))
    out = fused(x).view(4, 3, 10)
    sum(F.cross_entropy(out[:, i], y[:, i]) for i in range(3)).backward()
    grads = dict(fused.named_parameters())
    for i, (net, state) in enumerate(zip(nets, states, strict=True)):
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.set_state(state)
            alone = net(x[:, i : i + 1])  # its dropout draws from its own stream
        assert _close(out[:, i].detach(), alone.detach(), 1e-5), i
        F.cross_entropy(alone, y[:, i]).backward()
        for pname, p in net.named_parameters():
            g = grads[pname].grad
            mine = g[i] if g.shape[0] == 3 and g.dim() == p.dim() + 1 else g.chunk(3)[i]
            assert _close(mine, p.grad, 1e-4), (i, pname)


def test_fuse_and_split_give_back_the_networks():
    nets, _ = _nets_and_streams(ZOO["004"].spec, SEEDS)  # an fc head with hidden layers
    back = split_model(fuse_models(ZOO["004"].spec, nets), ZOO["004"].spec)
    for a, b in zip(nets, back, strict=True):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _compare(fused, separate, *, weights: float) -> None:
    assert len(fused) == len(separate)
    for f, s in zip(fused, separate, strict=True):
        assert f.loss_curve == pytest.approx(s.loss_curve, rel=1e-4)
        assert f.val_curve == pytest.approx(s.val_curve, abs=0.01)
        a, b = f.model.state_dict(), s.model.state_dict()
        assert a.keys() == b.keys()
        for k in a:
            assert _close(a[k].float(), b[k].float(), weights), k


@pytest.mark.parametrize(
    "cfg, weights",
    [
        (BASE, 1e-3),
        (replace(BASE, optimizer="adamw", lr=0.01, weight_decay=0.01, ema=0.9), 1e-3),
        pytest.param(
            replace(BASE, precision="bf16", channels_last=True), 5e-3, marks=pytest.mark.slow
        ),
    ],
    ids=["sgd", "adamw-ema", "bf16-channels-last"],
)
def test_three_fused_seeds_train_as_three_separate_trainings(data, cfg, weights):
    fused = train_fused(SPEC, data, cfg, seeds=SEEDS)
    separate = [train(SPEC, data, replace(cfg, seed=s)) for s in SEEDS]
    _compare(fused, separate, weights=weights)
    assert len({tuple(r.loss_curve) for r in fused}) == 3  # three trainings, not one
    assert all(r.train_time_s > 0 and r.device == "cpu" for r in fused)


@pytest.mark.slow
@pytest.mark.parametrize("key", sorted(ZOO))
def test_seed_networks_train_fused_as_separately(data, key):
    """The seed networks: one epoch at a low learning rate keeps the float noise small."""
    cfg = replace(BASE, epochs=1, lr=0.01)
    fused = train_fused(ZOO[key].spec, data, cfg, seeds=SEEDS)
    separate = [train(ZOO[key].spec, data, replace(cfg, seed=s)) for s in SEEDS]
    _compare(fused, separate, weights=5e-3)


def test_a_copy_whose_loss_diverges_fails_alone(data, monkeypatch):
    """Copy 1 starts from NaN weights: its result is the TrainingError of its separate
    training; the other copies are what they are alone."""
    real_build = fused_module.build
    built = []

    def build_one_broken(spec):
        net = real_build(spec)
        built.append(net)
        if len(built) == 2:
            with torch.no_grad():
                next(net.parameters()).fill_(float("nan"))
        return net

    monkeypatch.setattr(fused_module, "build", build_one_broken)
    results = train_fused(SPEC, data, BASE, seeds=SEEDS)
    monkeypatch.undo()
    assert isinstance(results[1], TrainingError)
    assert "training loss became nan in epoch 1" in str(results[1])
    separate = [train(SPEC, data, replace(BASE, seed=s)) for s in (0, 2)]
    _compare([results[0], results[2]], separate, weights=1e-3)


class Odd(Block):
    """A block whose layer has no fused form."""

    kind = "odd"

    def out_channels(self, c_in: int) -> int:
        return c_in

    def out_size(self, size: int) -> int:
        return size

    def layers(self, c_in: int) -> list[Layer]:
        return [Layer("LayerNorm", ((c_in, 28, 28),))]


def test_a_spec_without_a_fused_form_is_refused_in_one_line(data, monkeypatch):
    spec = ArchSpec(blocks=(Conv(4, pad=1),), head=Head())
    monkeypatch.setattr(fused_module, "plan", lambda s: ([*Odd().layers(1)], []))
    with pytest.raises(FuseError, match="its LayerNorm layer has no fused form") as err:
        check_fusable(spec)
    assert "\n" not in str(err.value)
    with pytest.raises(FuseError):
        train_fused(spec, data, BASE, seeds=SEEDS)


def test_seeds_are_fused_by_default_on_cuda_only():
    """On this CPU fused seeds took longer than separate trainings (docs/benchmarks.md)."""
    assert fuse_seeds_by_default("cuda") and not fuse_seeds_by_default("cpu")
