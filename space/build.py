"""``build(spec) -> nn.Module``.

A spec is first turned into a *layer plan*: each block and the head list their ``Layer``
records (``torch.nn`` classes and their arguments). ``build`` instantiates the plan;
``space.render`` prints the same plan as Python source. One plan, two readers: the exported
module and the trained module have the same layers, the same parameter names and the same
outputs. (One class differs: element dropout is ``space.dropout.ElementDropout``, an
``nn.Dropout`` that draws its training masks cheaply on a CPU; in evaluation both are the
identity.)
"""

from __future__ import annotations

import torch
from torch import nn

from budgetnas.space.blocks import Layer
from budgetnas.space.dropout import ElementDropout
from budgetnas.space.spec import ArchSpec


def plan(spec: ArchSpec) -> tuple[list[Layer], list[Layer]]:
    """(feature layers, head layers) of the network the spec describes."""
    walk = spec.shapes()
    inputs = zip(spec.blocks, walk[:-1], strict=True)
    features = [layer for block, (c, _) in inputs for layer in block.layers(c)]
    c, size = walk[-1]
    return features, spec.head.layers(c, size, spec.num_classes)


class Residual(nn.Module):
    """A residual block: ``body(x) + shortcut(x)`` (the shortcut: a 1x1 conv or the identity)."""

    def __init__(self, body: nn.Module, shortcut: nn.Module) -> None:
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the shortcut first: then the body's first layer is the last to read x
        shortcut = self.shortcut(x)  # (B, C, H, W)
        return self.body(x) + shortcut


class SqueezeExcite(nn.Module):
    """Squeeze-excitation: ``x`` times a per-channel gate computed from ``x``."""

    def __init__(self, gate: nn.Module) -> None:
        super().__init__()
        self.gate = gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)  # (B, C, H, W) * (B, C, 1, 1)


def make(layer: Layer) -> nn.Module:
    if layer.op == "SqueezeExcite":
        (gate,) = layer.args
        return SqueezeExcite(nn.Sequential(*map(make, gate)))
    if layer.op == "Residual":
        body, shortcut = layer.args
        return Residual(
            nn.Sequential(*map(make, body)),
            nn.Sequential(*map(make, shortcut)) if shortcut else nn.Identity(),
        )
    if layer.op == "Dropout":
        return ElementDropout(*layer.args, **dict(layer.kwargs))
    return getattr(nn, layer.op)(*layer.args, **dict(layer.kwargs))


class Net(nn.Module):
    """Input: (B, C, H, W) pixel values in [0, 1]. Output: (B, classes) logits."""

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        features, head = plan(spec)
        self.mean, self.std = spec.norm
        self.features = nn.Sequential(*map(make, features))
        self.head = nn.Sequential(*map(make, head))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std  # (B, C, H, W)
        x = self.features(x)  # (B, C', H', W')
        return self.head(x)  # (B, classes)


def build(spec: ArchSpec) -> Net:
    """The network the spec describes, freshly initialised (torch's global RNG)."""
    return Net(spec)
