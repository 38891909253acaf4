"""The training loop as trainers/train.py ran it before the capturable step (``trainers.step``)
existed, kept as the reference the step is compared with, bit for bit."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from budgetnas.space.build import build
from budgetnas.space.spec import ArchSpec, Conv, Head, Residual, Transition
from budgetnas.trainers.augment import random_affine
from budgetnas.trainers.data import TrainVal
from budgetnas.trainers.distill import check_targets, distill_loss
from budgetnas.trainers.ema import WeightAverage
from budgetnas.trainers.evaluate import device_name, evaluate
from budgetnas.trainers.recipe import TrainConfig
from budgetnas.trainers.train import TrainingError, TrainResult, seeded

# a small network with every kind of dropout and a residual block, and a short recipe: what
# the step, fused and K-at-once tests train
SPEC = ArchSpec(
    blocks=(
        Conv(6, pad=1, dropout=0.1),
        Transition(8),
        Residual((Conv(8, pad=1, dropout=0.1, dropout_kind="channel"),), proj=False),
    ),
    head=Head(hidden=(12,), dropout=0.2),
)
BASE = TrainConfig(epochs=2, batch_size=32)


def autocast(cfg: TrainConfig, device: torch.device) -> contextlib.AbstractContextManager:
    """The forward pass's precision: bf16 autocast where ``cfg.precision`` says so (the weights,
    gradients and optimizer stay fp32), else nothing."""
    if cfg.precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(
            model.parameters(),
            lr=cfg.lr,
            betas=(cfg.beta1, 0.999),
            weight_decay=cfg.weight_decay,
        )
    return torch.optim.SGD(
        model.parameters(),
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.momentum > 0,
        weight_decay=cfg.weight_decay,
    )


def reference_train(
    spec: ArchSpec,
    data: TrainVal,
    cfg: TrainConfig,
    *,
    device: torch.device | str = "cpu",
    on_epoch: Callable[[int, float, float], None] | None = None,
) -> TrainResult:
    """``train()`` as it was: torch.optim's optimizer and OneCycleLR, Python-sliced batches."""
    device = torch.device(device)
    with seeded(cfg.seed, device):
        return _train(spec, data, cfg, device=device, on_epoch=on_epoch)


def _train(
    spec: ArchSpec,
    data: TrainVal,
    cfg: TrainConfig,
    *,
    device: torch.device,
    on_epoch: Callable[[int, float, float], None] | None,
) -> TrainResult:
    import time

    model = build(spec).to(device)  # initialised from the seeded CPU generator
    layout = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = model.to(memory_format=layout)
    soft = None
    if cfg.distill:
        check_targets(cfg, data.soft, data.train, spec.num_classes)
        soft = data.soft.logits.to(device)  # (N, classes): row i for training image i
    average = WeightAverage(model, cfg.ema) if cfg.ema else None
    trained = model if average is None else average.model  # what is validated and returned
    train_x, train_y = data.train.x.to(device), data.train.y.to(device)
    val = data.val.to(device)
    n = len(train_y)
    batch = min(cfg.batch_size, n)
    steps = n // batch  # the ragged last batch is dropped; shapes stay static
    opt = _optimizer(model, cfg)
    sched = (  # the learning rate cycles; momentum stays cfg.momentum
        torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps, cycle_momentum=False
        )
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
            x = random_affine(x, cfg.augment, gen).contiguous(memory_format=layout)
            with autocast(cfg, device):
                out = model(x)
                if soft is None:
                    loss = F.cross_entropy(out, train_y[idx], label_smoothing=cfg.label_smoothing)
                else:
                    loss = distill_loss(out, train_y[idx], soft[idx], cfg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if average is not None:
                average.update(model)
            if sched is not None:
                sched.step()
            loss_sum += loss.detach()
        mean_loss = loss_sum.item() / steps
        if not math.isfinite(mean_loss):
            raise TrainingError(f"training loss became {mean_loss} in epoch {epoch + 1}")
        acc = evaluate(trained, val, batch_size=cfg.eval_batch_size)
        val_curve.append(acc)
        loss_curve.append(mean_loss)
        if on_epoch is not None:
            on_epoch(epoch, acc, mean_loss)
    return TrainResult(
        model=trained,
        val_curve=val_curve,
        loss_curve=loss_curve,
        train_time_s=time.perf_counter() - start,
        device=device_name(device),
    )
