"""The training loop: data on the device, index-slice batches, one host sync per epoch.

``train(spec, data, cfg)`` builds the network from the spec with the run's own seed (the
global RNG is restored afterwards), trains it, and evaluates on the validation split after
every epoch, handing each value to ``on_epoch`` (where a pruner may stop the run by raising).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from budgetnas.space.build import build
from budgetnas.space.spec import ArchSpec
from budgetnas.trainers.augment import AugmentConfig, random_affine
from budgetnas.trainers.data import Split, TrainVal

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("onecycle", "constant")


class TrainingError(Exception):
    """A training run went wrong in a way that belongs to the candidate, not to the search."""


class ConfigError(ValueError):
    """A training setting or device that cannot be used; the message says which."""


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 15
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.05  # the peak learning rate under OneCycle
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    schedule: str = "onecycle"
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    eval_batch_size: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {self.batch_size}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)}")
        if not self.lr > 0:
            raise ConfigError(f"learning rate must be positive, got {self.lr}")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"label smoothing must be in [0, 1), got {self.label_smoothing}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        if isinstance(kwargs.get("augment"), dict):
            kwargs["augment"] = AugmentConfig(**kwargs["augment"])
        return cls(**kwargs)


@dataclass
class TrainResult:
    model: nn.Module
    val_curve: list[float]  # validation accuracy after each epoch
    loss_curve: list[float]  # mean training loss of each epoch
    train_time_s: float
    device: str

    @property
    def val_acc(self) -> float:
        return self.val_curve[-1]


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


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(
        model.parameters(),
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.momentum > 0,
        weight_decay=cfg.weight_decay,
    )


def init_model(spec: ArchSpec, *, seed: int, device: torch.device) -> nn.Module:
    """The spec's network, initialised from ``seed`` without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build(spec).to(device)


def train(
    spec: ArchSpec,
    data: TrainVal,
    cfg: TrainConfig,
    *,
    device: torch.device | str = "cpu",
    on_epoch: Callable[[int, float, float], None] | None = None,
) -> TrainResult:
    """Train ``spec`` on ``data.train``, validating after every epoch.

    ``on_epoch(epoch, val_acc, train_loss)`` is called after each epoch (0-based); an exception
    it raises stops training and propagates (how a pruner ends a trial).
    """
    device = torch.device(device)
    model = init_model(spec, seed=cfg.seed, device=device)
    train_x, train_y = data.train.x.to(device), data.train.y.to(device)
    val = data.val.to(device)
    n = len(train_y)
    batch = min(cfg.batch_size, n)
    steps = n // batch  # the ragged last batch is dropped; shapes stay static
    opt = _optimizer(model, cfg)
    sched = (
        torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps)
        if cfg.schedule == "onecycle"
        else None
    )
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    val_curve: list[float] = []
    loss_curve: list[float] = []
    start = time.perf_counter()
    for epoch in range(cfg.epochs):
        model.train()
        perm = torch.randperm(n, device=device, generator=gen)
        loss_sum = torch.zeros((), device=device)
        for i in range(steps):
            idx = perm[i * batch : (i + 1) * batch]
            x = train_x[idx].float().div_(255)  # (B, C, H, W) in [0, 1]
            x = random_affine(x, cfg.augment, gen)
            loss = F.cross_entropy(model(x), train_y[idx], label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            loss_sum += loss.detach()
        mean_loss = loss_sum.item() / steps
        if not math.isfinite(mean_loss):
            raise TrainingError(f"training loss became {mean_loss} in epoch {epoch + 1}")
        acc = evaluate(model, val, batch_size=cfg.eval_batch_size)
        val_curve.append(acc)
        loss_curve.append(mean_loss)
        if on_epoch is not None:
            on_epoch(epoch, acc, mean_loss)
    return TrainResult(
        model=model,
        val_curve=val_curve,
        loss_curve=loss_curve,
        train_time_s=time.perf_counter() - start,
        device=device_name(device),
    )
