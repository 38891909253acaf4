"""Element dropout drawn in bulk: the drop rate and scaling of ``nn.Dropout``, its randomness
from the generator it is given (or the seeded default one), and ``nn.Dropout`` in evaluation."""

from __future__ import annotations

import torch
from torch import nn

from budgetnas.space.build import build
from budgetnas.space.dropout import ElementDropout, element_dropout, random_bits, scaled_mask
from budgetnas.space.zoo import ZOO


def test_drop_rate_and_scaling_are_those_of_nn_dropout():
    x = torch.full((400, 16, 8, 8), 3.0)  # 409,600 elements
    for p in (0.03, 0.09, 0.4):
        y = element_dropout(x, p, generator=torch.Generator().manual_seed(1))
        dropped = (y == 0).double().mean().item()
        # binomial spread: sqrt(p (1 - p) / n) < 0.0008; five of those
        assert abs(dropped - p) < 0.004, (p, dropped)
        assert torch.allclose(y[y != 0], torch.tensor(3.0 / (1 - p)))
        assert abs(y.double().mean().item() - 3.0) < 0.03  # unbiased, as nn.Dropout is
    assert torch.equal(element_dropout(x, 0.0), x)


def test_the_mask_is_the_generators_and_differs_between_draws():
    def draw(seed: int) -> torch.Tensor:
        return scaled_mask((64, 10, 7, 7), 0.05, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(draw(0), draw(0))
    assert not torch.equal(draw(0), draw(1))
    gen = torch.Generator().manual_seed(0)
    first, second = (scaled_mask((64, 10, 7, 7), 0.05, generator=gen) for _ in range(2))
    assert not torch.equal(first, second)
    drop = ElementDropout(0.05).train()  # the default generator, as trainers.train seeds it
    x = torch.ones(64, 10, 7, 7)
    torch.manual_seed(3)
    a = drop(x)
    torch.manual_seed(3)
    assert torch.equal(drop(x), a)


def test_built_networks_keep_nn_dropout_state_and_eval_outputs():
    """Element dropout is built as ``ElementDropout`` (an ``nn.Dropout``): the same state dict
    keys as the exported module's ``nn.Dropout`` and, in evaluation, the identity."""
    spec = ZOO["001"].spec
    net = build(spec)
    drops = [m for m in net.modules() if isinstance(m, nn.Dropout)]
    assert len(drops) == 6 and all(type(m) is ElementDropout and m.p == 0.05 for m in drops)
    torch.manual_seed(0)
    reference = build(spec)
    for module in reference.modules():
        for name, child in module.named_children():
            if isinstance(child, ElementDropout):
                setattr(module, name, nn.Dropout(child.p))
    assert net.state_dict().keys() == reference.state_dict().keys()
    reference.load_state_dict(net.state_dict())
    x = torch.rand(8, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(net.eval()(x), reference.eval()(x))


def test_the_float_mask_is_zero_or_scaled_from_the_bits_and_the_gradient_is_the_mask():
    """The float mask comes from the generator's bits: 1 / (1 - p) where the bits are at or
    above the threshold, 0 below it; the gradient of the output by the input is that mask."""
    p, shape = 0.09, (32, 8, 9, 9)
    bits = random_bits(shape, generator=torch.Generator().manual_seed(5))
    keep = bits.to(torch.int32) >= -(2**15) + round(p * 2**16)
    mask = scaled_mask(shape, p, generator=torch.Generator().manual_seed(5))
    assert torch.equal(mask, torch.where(keep, 1.0 / (1 - p), 0.0))
    assert mask.dtype == torch.float32
    assert abs((~keep).double().mean().item() - p) < 0.01
    x = torch.rand(shape, requires_grad=True)
    y = element_dropout(x, p, generator=torch.Generator().manual_seed(5))
    y.sum().backward()
    assert torch.equal(x.grad, mask)
    assert torch.equal(y.detach(), x.detach() * mask)
    half = scaled_mask(shape, p, dtype=torch.bfloat16, generator=torch.Generator().manual_seed(5))
    assert half.dtype == torch.bfloat16 and torch.equal(half.float() == 0, ~keep)
