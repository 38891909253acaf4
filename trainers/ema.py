"""An exponential moving average of a network's weights during training (``TrainConfig.ema``).

After every optimizer step the average moves towards the trained network's state:
``avg = d * avg + (1 - d) * live`` with ``d = min(ema, (1 + t) / (10 + t))`` at the t-th step
(0-based). The warm-up of ``d`` lets the average leave the random initialisation within a few
steps: a run of a few hundred steps (one epoch on a small training set) would otherwise end
with a fixed 0.999 still holding a third of its first weights.

Averaged: the parameters and BatchNorm's running statistics alike (the integer count of its
batches is copied). The running statistics are themselves a short average of the live
network's activations (momentum 0.1, about the last 10 steps); averaging them with the same
decay makes them describe the same window of steps as the averaged weights, the network that
is evaluated, instead of the last few steps of the live one (timm's model EMA does the same).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["WeightAverage", "ema_decay"]


def ema_decay(decay: float, step: int) -> float:
    """The decay applied at optimizer step ``step`` (0-based): ``decay`` after its warm-up."""
    return min(decay, (1 + step) / (10 + step))


class WeightAverage:
    """The averaged copy of a network (``model``), updated after each optimizer step."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.steps = 0
        self.model = copy.deepcopy(model)  # same device and memory format as the live one
        self.model.requires_grad_(False)

    @torch.no_grad()
    def update(self, live: nn.Module) -> None:
        """Move the average one step towards ``live``'s parameters and buffers."""
        d = ema_decay(self.decay, self.steps)
        self.steps += 1
        averaged, copied, sources, counts = [], [], [], []
        ours = self.model.state_dict()
        for name, value in live.state_dict().items():
            if value.is_floating_point():
                averaged.append(ours[name])
                sources.append(value)
            else:
                copied.append(ours[name])
                counts.append(value)
        torch._foreach_lerp_(averaged, sources, 1.0 - d)
        for mine, theirs in zip(copied, counts, strict=True):
            mine.copy_(theirs)
