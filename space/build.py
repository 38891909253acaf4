"""``build(spec) -> nn.Module``.

A spec is first turned into a *layer plan*: a list of ``Layer`` records naming ``torch.nn``
classes and their arguments. ``build`` instantiates the plan; ``space.render`` prints the same
plan as Python source. One plan, two readers: the exported module and the trained module have
the same layers, the same parameter names and the same outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from budgetnas.space.spec import ArchSpec, Conv, Pool, Transition
from budgetnas.space.spec import Residual as ResidualSpec


@dataclass(frozen=True)
class Layer:
    """One ``torch.nn`` layer: ``getattr(nn, op)(*args, **kwargs)``.

    ``op == "Residual"`` is the one composite: ``args`` is ``(body, shortcut)``, two tuples of
    layers (an empty shortcut is the identity).
    """

    op: str
    args: tuple[Any, ...] = ()
    kwargs: tuple[tuple[str, Any], ...] = ()


def _act(name: str) -> list[Layer]:
    return {"relu": [Layer("ReLU")], "gelu": [Layer("GELU")], "none": []}[name]


def _conv_layers(c_in: int, conv: Conv) -> list[Layer]:
    layers = [
        Layer(
            "Conv2d",
            (c_in, conv.out),
            (("kernel_size", conv.k), ("padding", conv.pad), ("bias", conv.bias)),
        )
    ]
    bn = [Layer("BatchNorm2d", (conv.out,))] if conv.bn else []
    act = _act(conv.act)
    layers += bn + act if conv.order == "bn_act" else act + bn
    if conv.dropout:
        layers.append(Layer("Dropout", (conv.dropout,)))
    return layers


def _pointwise(c_in: int, c_out: int, bias: bool) -> Layer:
    return Layer("Conv2d", (c_in, c_out), (("kernel_size", 1), ("bias", bias)))


def plan(spec: ArchSpec) -> tuple[list[Layer], list[Layer]]:
    """(feature layers, head layers) of the network the spec describes."""
    features: list[Layer] = []
    c = spec.in_channels
    for block in spec.blocks:
        if isinstance(block, Conv):
            features += _conv_layers(c, block)
        elif isinstance(block, Pool):
            features.append(
                Layer("MaxPool2d", (2, 2), (("ceil_mode", True),) if block.ceil else ())
            )
        elif isinstance(block, Transition):
            pool = Layer("MaxPool2d", (2, 2))
            conv = [_pointwise(c, block.out, block.bias)]
            conv += [Layer("BatchNorm2d", (block.out,))] if block.bn else []
            conv += _act(block.act)
            features += [pool, *conv] if block.pool_first else [*conv, pool]
        elif isinstance(block, ResidualSpec):
            body: list[Layer] = []
            c_body = c
            for conv_block in block.body:
                body += _conv_layers(c_body, conv_block)
                c_body = conv_block.out
            shortcut = (_pointwise(c, block.out, block.bias),) if block.proj else ()
            features.append(Layer("Residual", (tuple(body), shortcut)))
        else:  # pragma: no cover - ArchSpec validation admits only the kinds above
            raise TypeError(block)
        c = getattr(block, "out", c)

    head_spec = spec.head
    if head_spec.kind == "conv_gap":
        head = [
            Layer(
                "Conv2d",
                (c, spec.num_classes),
                (
                    ("kernel_size", head_spec.k),
                    ("padding", head_spec.pad),
                    ("bias", head_spec.bias),
                ),
            ),
            Layer("AdaptiveAvgPool2d", (1,)),
            Layer("Flatten"),
        ]
        return features, head

    _, size = spec.feature_shape()
    head = [] if size == head_spec.pool_to else [Layer("AdaptiveAvgPool2d", (head_spec.pool_to,))]
    head.append(Layer("Flatten"))
    width = c * head_spec.pool_to * head_spec.pool_to
    for h in head_spec.hidden:
        head.append(Layer("Linear", (width, h), (("bias", head_spec.bias),)))
        head += _act(head_spec.act)
        if head_spec.dropout:
            head.append(Layer("Dropout", (head_spec.dropout,)))
        width = h
    head.append(Layer("Linear", (width, spec.num_classes), (("bias", head_spec.bias),)))
    return features, head


class Residual(nn.Module):
    def __init__(self, body: nn.Module, shortcut: nn.Module) -> None:
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


def make(layer: Layer) -> nn.Module:
    if layer.op == "Residual":
        body, shortcut = layer.args
        return Residual(
            nn.Sequential(*map(make, body)),
            nn.Sequential(*map(make, shortcut)) if shortcut else nn.Identity(),
        )
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
