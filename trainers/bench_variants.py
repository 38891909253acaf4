"""What ``budgetnas bench`` times on the trainer's side, each a ``Variant`` stepped in interleaved
turns: the loop before the capturable step, K trainings at once, N seeds fused."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from budgetnas.space.spec import ArchSpec
from budgetnas.space.zoo import ZOO
from budgetnas.trainers.augment import AugmentConfig, random_affine
from budgetnas.trainers.bench_loader import ROTATION, sync_device
from budgetnas.trainers.data import Split, TrainVal
from budgetnas.trainers.graphs import WARMUP_STEPS
from budgetnas.trainers.precision import recipe_settings
from budgetnas.trainers.recipe import TrainConfig
from budgetnas.trainers.step import autocast
from budgetnas.trainers.train import init_model, seeded

WARM_ROUNDS = WARMUP_STEPS + 2  # steps before a clock starts: past a graph's capture


def bench_data(data: TrainVal, *, batch: int, steps: int) -> TrainVal:
    """The first ``batch x steps`` training images (one epoch of ``steps`` steps) and one
    batch of validation images."""
    n = batch * steps
    return TrainVal(
        data.info,
        Split(data.train.x[:n], data.train.y[:n]),
        Split(data.val.x[:batch], data.val.y[:batch]),
    )


def bench_recipe(batch: int, precision: str, device: torch.device) -> TrainConfig:
    """One epoch of the default recipe at ``batch``, seed 001's rotation as augmentation."""
    return TrainConfig(
        epochs=1,
        batch_size=batch,
        augment=AugmentConfig(ROTATION, 0.0, 0.0),
        **recipe_settings(precision, device),
    )


def legacy_step(
    model: torch.nn.Module,
    split: Split,
    cfg: TrainConfig,
    *,
    total_steps: int,
    generator: torch.Generator,
) -> Callable[[], None]:
    """One step of the loop before ``trainers.step`` (a baseline to time against): batches
    sliced from the permutation in Python, ``torch.optim.SGD`` and ``OneCycleLR``."""
    device = split.x.device
    layout = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model.to(memory_format=layout)
    opt = torch.optim.SGD(
        model.parameters(),
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.momentum > 0,
        weight_decay=cfg.weight_decay,
    )
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=total_steps, cycle_momentum=False
    )
    n, batch = len(split), min(cfg.batch_size, len(split))
    steps = n // batch
    state: dict = {"i": 0, "perm": None, "loss": torch.zeros((), device=device)}

    def step() -> None:
        i = state["i"] % steps
        if i == 0:
            state["perm"] = torch.randperm(n, device=device, generator=generator)
        idx = state["perm"][i * batch : (i + 1) * batch]
        x = split.x[idx].float().div_(255)
        x = random_affine(x, cfg.augment, generator).contiguous(memory_format=layout)
        with autocast(cfg, device):
            loss = F.cross_entropy(model(x), split.y[idx], label_smoothing=cfg.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        state["loss"] += loss.detach()
        state["i"] += 1

    return step


@dataclass
class Variant:
    """One pipeline of the table: ``advance()`` takes one step (of every training it holds:
    ``trainings``, their images counted), ``finish()`` ends it untimed."""

    label: str
    advance: Callable[[], object]
    trainings: int = 1
    finish: Callable[[], object] = lambda: None


def interleaved(
    variants: list[Variant], *, steps: int, device: torch.device, chunks: int = 4
) -> list[float]:
    """Seconds each variant takes for ``steps`` steps after ``WARM_ROUNDS`` untimed ones,
    measured in ``chunks`` turns, the variants' turns interleaved: a machine shared with other
    work slows them alike."""
    for v in variants:
        for _ in range(WARM_ROUNDS):
            v.advance()
    seconds = [0.0] * len(variants)
    sizes = [steps // chunks + (1 if c < steps % chunks else 0) for c in range(chunks)]
    for size in (s for s in sizes if s):
        for i, v in enumerate(variants):
            sync_device(device)
            start = time.perf_counter()
            for _ in range(size):
                v.advance()
            sync_device(device)
            seconds[i] += time.perf_counter() - start
    for v in variants:
        v.finish()
    return seconds


def legacy_variant(
    spec_key: str, data: TrainVal, *, batch: int, steps: int, device: torch.device, cfg: TrainConfig
) -> Variant:
    """The loop before the capturable step."""
    total = WARM_ROUNDS + steps
    sub = bench_data(data, batch=batch, steps=total)
    with seeded(0, device):
        model = init_model(ZOO[spec_key].spec, seed=0, device=device)
    step = legacy_step(
        model,
        sub.train.to(device),
        cfg,
        total_steps=total,
        generator=torch.Generator(device=device).manual_seed(0),
    )
    return Variant("loop before the step, torch.optim", step)


def at_once_variant(
    label: str,
    spec_key: str | Sequence[ArchSpec],
    data: TrainVal,
    *,
    batch: int,
    steps: int,
    trainings: int,
    device: torch.device,
    cfg: TrainConfig,
    graphs: bool,
) -> Variant:
    """``trainings`` trainings (seeds 0, 1, ...) at once in this process
    (``trainers.many.AtOnce``; one training: the plain trainer), a round of steps a call: of
    the zoo network ``spec_key``, or of the networks given, in turn."""
    from budgetnas.trainers.many import AtOnce, Job

    specs = [ZOO[spec_key].spec] if isinstance(spec_key, str) else list(spec_key)
    sub = bench_data(data, batch=batch, steps=WARM_ROUNDS + steps + 1)
    jobs = [Job(specs[k % len(specs)], sub, replace(cfg, seed=k)) for k in range(trainings)]
    many = AtOnce(jobs, device=device, graphs=graphs)

    def finish() -> None:
        while many.round():  # the last step and the validation
            pass
        failed = [r for r in many.results if isinstance(r, Exception)]
        if failed:
            raise RuntimeError(f"a benchmark training failed: {failed[0]}")

    return Variant(label, many.round, trainings, finish)


def fused_variant(
    spec_key: str,
    data: TrainVal,
    *,
    batch: int,
    steps: int,
    seeds: int,
    device: torch.device,
    cfg: TrainConfig,
    graphs: bool,
) -> Variant:
    """``seeds`` copies of a network fused into one model (``trainers.fused``)."""
    from budgetnas.trainers.fused import fused_training

    sub = bench_data(data, batch=batch, steps=WARM_ROUNDS + steps + 1)
    run = fused_training(
        ZOO[spec_key].spec, sub, cfg, seeds=range(seeds), device=device, graphs=graphs
    )

    def finish() -> None:
        while run.advance():
            pass

    return Variant(f"{seeds} seeds fused, in total", run.advance, seeds, finish)
