"""One training step on fixed device buffers: what a CUDA graph captures, and every device runs.

A step of ``TrainStep`` reads nothing from the host and writes nothing to it, and no Python
number in it changes from one step to the next:

- the batch: the step's row of the epoch's permutation is copied into a fixed index buffer by a
  step counter on the device, and the images, labels (and a teacher's soft targets) are
  gathered from the on-device data by it, into fixed buffers;
- the learning rate (OneCycle, exactly as torch's ``OneCycleLR`` with ``cycle_momentum=False``
  sets it, or constant) and every other per-step number (AdamW's bias corrections, the EMA's
  decay) are a table on the device, one row per optimizer step, read by the step counter;
- the update (``Update``: SGD with Nesterov momentum and L2 weight decay, or AdamW) takes those
  numbers as tensors; on a CPU it computes exactly what ``torch.optim.SGD`` / ``AdamW`` compute
  (their single-tensor code, the CPU's default), so a CPU training keeps its bits;
- the loss of the epoch is summed on the device and read once per epoch.

Augmentation and dropout draw from generators a replay advances: the copy's own generator for
the batch order and augmentation, the device's default generator for dropout (what
``trainers.train.seeded`` seeds). On a CPU the step runs eagerly and draws exactly what the
loop before it drew.

``copies`` > 1 trains that many networks of one spec in one model (``trainers.fused``): each
copy its own permutation and augmentation from its own generator, its batch stacked on the
channel axis, its own loss; the loss backpropagated is their sum, so each copy's gradient is
its own loss's.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from budgetnas.trainers.augment import random_affine, random_affine_copies
from budgetnas.trainers.data import Split
from budgetnas.trainers.distill import distill_loss
from budgetnas.trainers.ema import WeightAverage, ema_decay
from budgetnas.trainers.recipe import TrainConfig

__all__ = [
    "ADAMW_BETA2",
    "ADAMW_EPS",
    "Batches",
    "EmaUpdate",
    "StepTable",
    "TrainStep",
    "Update",
    "learning_rates",
    "step_table",
    "validation_pass",
]

ADAMW_BETA2 = 0.999  # torch's defaults, as the recipe's AdamW has always used them
ADAMW_EPS = 1e-8


def learning_rates(cfg: TrainConfig, total_steps: int) -> list[float]:
    """The learning rate of each of ``total_steps`` optimizer steps: under OneCycle, the values
    torch's ``OneCycleLR(max_lr=cfg.lr, total_steps, cycle_momentum=False)`` sets (read from
    the scheduler itself, so they are its own on every torch version); else ``cfg.lr``."""
    if cfg.schedule != "onecycle":
        return [cfg.lr] * total_steps
    opt = torch.optim.SGD([torch.zeros(0, requires_grad=True)], lr=cfg.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=total_steps, cycle_momentum=False
    )
    lrs = [opt.param_groups[0]["lr"]]
    with warnings.catch_warnings():  # get_lr() outside step() warns; it computes the same
        warnings.simplefilter("ignore")
        for t in range(1, total_steps):
            sched.last_epoch = t
            lrs.append(sched.get_lr()[0])
    return lrs


@dataclass(frozen=True)
class StepTable:
    """The per-step numbers of a recipe: ``values`` (steps, columns) float32, and the column of
    each number (-1: the recipe has none)."""

    values: torch.Tensor
    lr: int = 0
    decay: int = -1  # AdamW: 1 - lr x weight decay (the decoupled decay of the weights)
    neg_step: int = -1  # AdamW: -lr / (1 - beta1^t)
    bias2_sqrt: int = -1  # AdamW: sqrt(1 - beta2^t)
    ema: int = -1  # EMA: the weight 1 - d of the live network in the average


def step_table(cfg: TrainConfig, total_steps: int) -> StepTable:
    """Every number a step of ``cfg`` needs that changes between steps, computed on the host in
    double precision as torch's optimizers and ``WeightAverage`` compute them, then rounded to
    float32 as their kernels round them."""
    lrs = learning_rates(cfg, total_steps)
    columns: dict[str, list[float]] = {"lr": lrs}
    if cfg.optimizer == "adamw":
        beta1, beta2 = cfg.beta1, ADAMW_BETA2
        steps = [float(t + 1) for t in range(total_steps)]  # torch's step count, a float
        columns["decay"] = [1 - lr * cfg.weight_decay for lr in lrs]
        columns["neg_step"] = [-(lr / (1 - beta1**s)) for lr, s in zip(lrs, steps, strict=True)]
        columns["bias2_sqrt"] = [(1 - beta2**s) ** 0.5 for s in steps]
    if cfg.ema:
        columns["ema"] = [1.0 - ema_decay(cfg.ema, t) for t in range(total_steps)]
    values = torch.tensor(list(zip(*columns.values(), strict=True)), dtype=torch.float64)
    return StepTable(values.to(torch.float32), **{k: i for i, k in enumerate(columns)})


class Update:
    """The optimizer step of ``cfg`` over ``params``, its learning rate (and AdamW's bias
    corrections) given as device tensors: SGD with Nesterov momentum (plain SGD at momentum 0)
    and L2 weight decay, or AdamW with betas (``cfg.beta1``, 0.999) and decoupled decay.

    On a CPU it computes what ``torch.optim.SGD`` / ``torch.optim.AdamW`` compute there, to the
    bit (tests/trainers/test_step.py); nothing in it reads a tensor on the host, so a CUDA
    graph can hold it. Parameters without a gradient are left alone, as torch's do."""

    def __init__(self, params: Sequence[torch.Tensor], cfg: TrainConfig) -> None:
        self.params = list(params)
        self.adamw = cfg.optimizer == "adamw"
        self.momentum = cfg.momentum
        self.weight_decay = cfg.weight_decay
        self.beta1 = cfg.beta1
        zeros = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        if self.adamw:
            self.exp_avg = zeros
            self.exp_avg_sq = [torch.zeros_like(p) for p in zeros]
        else:  # a zero buffer's first update is the first gradient: torch's first buffer
            self.buf = zeros if self.momentum else []

    @torch.no_grad()
    def __call__(self, scalars: dict[str, torch.Tensor]) -> None:
        """One step; ``scalars``: the step's ``lr`` and, for AdamW, ``decay``, ``neg_step`` and
        ``bias2_sqrt``, each a one-element tensor on the parameters' device."""
        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        params = [self.params[i] for i in live]
        grads = [self.params[i].grad for i in live]
        if self.adamw:
            self._adamw(live, params, grads, scalars)
        else:
            self._sgd(live, params, grads, scalars["lr"])

    def _sgd(self, live, params, grads, lr: torch.Tensor) -> None:
        d = grads
        if self.weight_decay:
            d = torch._foreach_add(grads, params, alpha=self.weight_decay)
        if self.momentum:
            bufs = [self.buf[i] for i in live]
            torch._foreach_mul_(bufs, self.momentum)
            torch._foreach_add_(bufs, d)
            d = torch._foreach_add(d, bufs, alpha=self.momentum)  # Nesterov
        torch._foreach_addcmul_(params, d, [lr] * len(params), value=-1)  # p - lr x d

    def _adamw(self, live, params, grads, s: dict[str, torch.Tensor]) -> None:
        n = len(params)
        if self.weight_decay:
            torch._foreach_mul_(params, [s["decay"]] * n)
        exp_avg = [self.exp_avg[i] for i in live]
        exp_avg_sq = [self.exp_avg_sq[i] for i in live]
        torch._foreach_lerp_(exp_avg, grads, 1 - self.beta1)
        torch._foreach_mul_(exp_avg_sq, ADAMW_BETA2)
        torch._foreach_addcmul_(exp_avg_sq, grads, grads, value=1 - ADAMW_BETA2)
        denom = torch._foreach_sqrt(exp_avg_sq)
        torch._foreach_div_(denom, [s["bias2_sqrt"]] * n)
        torch._foreach_add_(denom, ADAMW_EPS)
        # torch: p + (-step_size x exp_avg) / denom, in that order
        torch._foreach_addcdiv_(params, torch._foreach_mul(exp_avg, [s["neg_step"]] * n), denom)


class EmaUpdate:
    """``WeightAverage.update`` with the live network's weight in the average given as a
    device tensor: the same values, without reading the step count on the host."""

    def __init__(self, average: WeightAverage, live: nn.Module) -> None:
        ours = average.model.state_dict()
        self.averaged, self.sources, self.copied, self.counts = [], [], [], []
        for name, value in live.state_dict().items():
            if value.is_floating_point():
                self.averaged.append(ours[name])
                self.sources.append(value)
            else:
                self.copied.append(ours[name])
                self.counts.append(value)

    @torch.no_grad()
    def __call__(self, weight: torch.Tensor) -> None:
        torch._foreach_lerp_(self.averaged, self.sources, [weight] * len(self.averaged))
        for mine, theirs in zip(self.copied, self.counts, strict=True):
            mine.copy_(theirs)


class Batches:
    """Each copy's batch of the current step, gathered on the device into fixed buffers.

    ``shuffle()`` (at the start of each epoch, outside a graph) draws each copy's permutation
    of the training images from its generator; ``next()`` (inside the step) copies the step's
    slice of each into the index buffer and gathers by it. ``generators[i]`` also draws copy
    i's augmentation: the draws of a copy are those it makes trained alone."""

    def __init__(
        self,
        split: Split,
        *,
        batch: int,
        generators: Sequence[torch.Generator],
        soft: torch.Tensor | None = None,
    ) -> None:
        self.x, self.y, self.soft = split.x, split.y, soft
        self.generators = list(generators)
        self.copies = len(self.generators)
        self.n = len(split)
        self.batch = batch
        self.steps = self.n // batch  # the ragged last batch is dropped; shapes stay static
        device = self.x.device
        self.perm = torch.empty((self.copies, self.n), dtype=torch.long, device=device)
        # (copies, steps, batch): the epoch's batches, a view of the permutations
        self.rows = self.perm[:, : self.steps * batch].view(self.copies, self.steps, batch)
        self.pos = torch.zeros(1, dtype=torch.long, device=device)  # the step in the epoch
        self.idx = torch.empty((self.copies, 1, batch), dtype=torch.long, device=device)
        self.images = torch.empty(
            (self.copies * batch, *self.x.shape[1:]), dtype=self.x.dtype, device=device
        )
        self.labels = torch.empty(self.copies * batch, dtype=self.y.dtype, device=device)

    def shuffle(self) -> None:
        """The epoch's permutations (one per copy, from its generator); back to its first step."""
        for row, gen in zip(self.perm, self.generators, strict=True):
            row.copy_(torch.randperm(self.n, device=self.perm.device, generator=gen))
        self.pos.zero_()

    def next(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(images (copies x B, C, H, W) uint8, labels (copies x B,), soft targets or None)
        of the step, copy by copy; the position moves on by one step."""
        torch.index_select(self.rows, 1, self.pos, out=self.idx)
        self.pos += 1
        flat = self.idx.view(-1)
        torch.index_select(self.x, 0, flat, out=self.images)
        torch.index_select(self.y, 0, flat, out=self.labels)
        soft = None if self.soft is None else self.soft.index_select(0, flat)
        return self.images, self.labels, soft


def autocast(cfg: TrainConfig, device: torch.device) -> contextlib.AbstractContextManager:
    """The forward pass's precision: bf16 autocast where ``cfg.precision`` says so (weights,
    gradients and the update stay fp32). On CUDA without autocast's weight cache, which a
    graph capture cannot hold (the values are the same)."""
    if cfg.precision == "bf16":
        return torch.autocast(
            device.type, dtype=torch.bfloat16, cache_enabled=device.type != "cuda"
        )
    return contextlib.nullcontext()


class TrainStep:
    """The whole optimizer step of ``copies`` networks in ``model`` (one, or a fused model of
    several: ``trainers.fused``), on fixed buffers: batch, forward, loss, backward, update,
    EMA, counters. Called eagerly, or captured once and replayed (``trainers.graphs``).

    ``layout`` is the memory format of the batches; ``average``: the EMA of the weights, updated
    after each step. The epoch's loss of each copy is summed on the device (``epoch_losses``)."""

    def __init__(
        self,
        model: nn.Module,
        split: Split,
        cfg: TrainConfig,
        *,
        generators: Sequence[torch.Generator],
        total_steps: int,
        soft: torch.Tensor | None = None,
        average: WeightAverage | None = None,
        layout: torch.memory_format = torch.contiguous_format,
    ) -> None:
        device = split.x.device
        self.model, self.cfg, self.device, self.layout = model, cfg, device, layout
        batch = min(cfg.batch_size, len(split))
        self.batches = Batches(split, batch=batch, generators=generators, soft=soft)
        self.copies = self.batches.copies
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.update = Update(self.params, cfg)
        self.average = None if average is None else EmaUpdate(average, model)
        table = step_table(cfg, total_steps)
        self.columns = {
            name: getattr(table, name)
            for name in ("lr", "decay", "neg_step", "bias2_sqrt", "ema")
            if getattr(table, name) >= 0
        }
        self.table = table.values.to(device)
        self.t = torch.zeros(1, dtype=torch.long, device=device)  # optimizer steps taken
        self.row = torch.empty((1, self.table.shape[1]), device=device)
        self.scalars = {name: self.row[0, j : j + 1] for name, j in self.columns.items()}
        self.loss_sum = torch.zeros(self.copies, device=device)

    @property
    def steps(self) -> int:
        """Optimizer steps in an epoch."""
        return self.batches.steps

    def start_epoch(self) -> None:
        """Training mode, the epoch's permutations, the loss sums at zero (outside a graph)."""
        self.model.train()
        self.batches.shuffle()
        self.loss_sum.zero_()

    def epoch_losses(self) -> list[float]:
        """The mean training loss of each copy over the epoch's steps (one host sync)."""
        return [total / self.steps for total in self.loss_sum.tolist()]

    def __call__(self) -> None:
        """One optimizer step of every copy."""
        torch.index_select(self.table, 0, self.t, out=self.row)
        self.t += 1
        images, labels, soft = self.batches.next()
        x = images.float().div_(255)  # (copies x B, C, H, W) in [0, 1]
        gens = self.batches.generators
        if self.copies == 1:
            x = random_affine(x, self.cfg.augment, gens[0])
        else:
            x = random_affine_copies(x, self.cfg.augment, gens)
            b = x.shape[0] // self.copies
            x = x.view(self.copies, b, *x.shape[1:]).transpose(0, 1).flatten(1, 2)
        x = x.contiguous(memory_format=self.layout)  # (B, copies x C, H, W)
        with autocast(self.cfg, self.device):
            out = self.model(x)  # (B, copies x classes)
            losses = self._losses(out, labels, soft)  # one per copy
        for p in self.params:
            p.grad = None
        total = losses[0] if self.copies == 1 else torch.stack(losses)
        (total if self.copies == 1 else total.sum()).backward()
        self.update(self.scalars)
        if self.average is not None:
            self.average(self.scalars["ema"])
        self.loss_sum += total.detach()

    def _losses(
        self, out: torch.Tensor, labels: torch.Tensor, soft: torch.Tensor | None
    ) -> list[torch.Tensor]:
        cfg, n = self.cfg, self.copies
        outs = out.view(out.shape[0], n, -1).unbind(1) if n > 1 else (out,)
        ys = labels.view(n, -1).unbind(0) if n > 1 else (labels,)
        softs = (None,) * n if soft is None else soft.view(n, -1, soft.shape[1]).unbind(0)
        return [
            F.cross_entropy(o, y, label_smoothing=cfg.label_smoothing)
            if s is None
            else distill_loss(o, y, s.view(-1, s.shape[-1]), cfg)
            for o, y, s in zip(outs, ys, softs, strict=True)
        ]


def validation_pass(
    model: nn.Module, split: Split, correct: torch.Tensor, *, batch_size: int
) -> None:
    """Count into ``correct`` (copies,) int64 the validation images each copy of ``model``
    classifies right, in eval mode and without gradients (capturable: nothing is read on the
    host). One copy: what ``trainers.evaluate.evaluate`` counts; several: each sees every
    image (stacked on the channel axis, as in training)."""
    copies = correct.shape[0]
    correct.zero_()
    for i in range(0, len(split), batch_size):
        x = split.x[i : i + batch_size].float().div_(255)  # (B, C, H, W)
        y = split.y[i : i + batch_size]
        if copies > 1:
            x = x.repeat(1, copies, 1, 1)  # (B, copies x C, H, W)
        out = model(x).view(x.shape[0], copies, -1)  # (B, copies, classes)
        correct += (out.argmax(2) == y[:, None]).sum(0)
