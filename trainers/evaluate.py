"""Inference-side helpers: which device, and a model's accuracy on a split.

Reports, exports and verification use these without importing the training loop.
"""

from __future__ import annotations

import torch
from torch import nn

from budgetnas.trainers.data import Split
from budgetnas.trainers.recipe import ConfigError


def resolve_device(name: str | None) -> torch.device:
    """``auto`` (or None) picks CUDA when present; anything else must exist here."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but CUDA is not available here")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"unsupported device {name!r}; use auto, cpu, cuda or cuda:N")
    return device


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return "cpu"


@torch.inference_mode()
def evaluate(model: nn.Module, split: Split, *, batch_size: int = 2000) -> float:
    """Accuracy of ``model`` on ``split`` (one host sync)."""
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=split.y.device)
    for i in range(0, len(split), batch_size):
        x = split.x[i : i + batch_size].float().div_(255)  # (B, C, H, W)
        correct += (model(x).argmax(1) == split.y[i : i + batch_size]).sum()
    model.train(was_training)
    return correct.item() / max(1, len(split))
