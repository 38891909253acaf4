"""Training throughput: budgetnas's trainer against the seeds' DataLoader pipeline, and the
ways budgetnas can fill a device.

Every pipeline trains the same network with the same batch size, optimizer and schedule for
the same number of optimizer steps, with the same augmentation (random rotation, as the seed
write-ups use); the seeds' way reads PIL images through per-sample torchvision transforms and
a ``DataLoader`` with worker processes, budgetnas's way slices a uint8 tensor already on the
device and rotates the batch there. budgetnas's rows: the loop before the capturable step
(torch.optim's optimizer and scheduler), the step eagerly, the step as a CUDA graph, K
trainings at once in one process (``trainers.many``) and N seeds fused into one model
(``trainers.fused``). Rates are reported as epochs (60,000 images) per second, in total.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from budgetnas.space.zoo import ZOO
from budgetnas.trainers.augment import AugmentConfig
from budgetnas.trainers.bench_loader import (
    EPOCH_IMAGES,
    ROTATION,
    dataloader_step,
    run_concurrent,
    sync_device,
)
from budgetnas.trainers.bench_variants import (
    WARM_ROUNDS,
    Variant,
    at_once_variant,
    bench_recipe,
    fused_variant,
    interleaved,
    legacy_variant,
)
from budgetnas.trainers.data import Split, TrainVal, load_train_val
from budgetnas.trainers.datasets import default_data_dir
from budgetnas.trainers.evaluate import device_name, resolve_device
from budgetnas.trainers.recipe import ConfigError, TrainConfig
from budgetnas.trainers.train import train


@dataclass(frozen=True)
class BenchRow:
    net: str
    batch: int
    pipeline: str
    steps: int
    seconds: float

    @property
    def epochs_per_s(self) -> float:
        return self.steps * self.batch / EPOCH_IMAGES / self.seconds


def time_budgetnas(
    spec_key: str, data: TrainVal, *, batch: int, steps: int, device: torch.device
) -> float:
    """Seconds for ``steps`` optimizer steps of budgetnas's trainer (after a warm-up run)."""
    n = batch * steps
    subset = TrainVal(
        data.info,
        Split(data.train.x[:n], data.train.y[:n]),
        Split(data.val.x[:batch], data.val.y[:batch]),
    )
    cfg = TrainConfig(epochs=1, batch_size=batch, augment=AugmentConfig(ROTATION, 0.0, 0.0))
    warm = TrainVal(
        data.info, Split(subset.train.x[: batch * 3], subset.train.y[: batch * 3]), subset.val
    )
    train(ZOO[spec_key].spec, warm, cfg, device=device)
    sync_device(device)
    return train(ZOO[spec_key].spec, subset, cfg, device=device).train_time_s


AT_ONCE_CUDA = "1,2,4,8,16"


def _csv(text: str, what: str, convert: Callable = str) -> tuple:
    try:
        return tuple(convert(part.strip()) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"{what} must be a comma-separated list, got {text!r}") from None


def bench_table(
    *,
    device: str,
    steps: int,
    nets: str,
    batches: str,
    concurrent: str,
    loader_workers: int,
    data_dir: Path | str | None,
    at_once: str = "auto",
    fused_seeds: int = 3,
    precision: str = "fp32",
    loader: bool = True,
    echo: Callable[[str], None] = print,
) -> None:
    """``budgetnas bench``: per (net, batch) one row per pipeline, side by side in one run
    and interleaved (``interleaved``): the seeds' DataLoader, the loop before the step, the
    step eagerly, as a CUDA graph, K trainings at once, N seeds fused; then the sweep of
    trainer processes at once.

    ``at_once``: the K of "K trainings at once" (auto: 1,2,4,8,16 on CUDA, 2 on a CPU, where
    they only take turns); ``fused_seeds``: the N of "N seeds fused" (0: none); ``loader``:
    also time the DataLoader pipeline (it needs torchvision's MNIST files)."""
    dev = resolve_device(device)
    root = str(Path(data_dir or default_data_dir()).resolve())
    net_keys = _csv(nets, "--nets")
    unknown = [k for k in net_keys if k not in ZOO]
    if unknown:
        raise ConfigError(f"no zoo entry {unknown[0]!r}; entries: {', '.join(ZOO)}")
    sizes = _csv(batches, "--batches", int)
    counts = _csv(concurrent, "--concurrent", int)
    if at_once == "auto":
        at_once = AT_ONCE_CUDA if dev.type == "cuda" else "2"
    ks = _csv(at_once, "--at-once", int)
    if any(k < 1 for k in ks) or fused_seeds < 0:
        raise ConfigError("--at-once and --fused-seeds count trainings: 1 or more (0: none)")
    cuda = dev.type == "cuda"
    echo(
        f"device: {device_name(dev)}, torch {torch.__version__}, {torch.get_num_threads()} "
        f"thread(s), {steps} steps per measurement, precision {precision}"
    )
    echo(f"{'net':<4} {'batch':>5}  {'pipeline':<40} {'epochs/s':>9} {'x eager':>8}")
    # a few validation images are enough: each training validates once, untimed
    data = load_train_val("mnist", data_dir=root, device=dev, val_size=max(sizes))
    forked = [dev.index if dev.index is not None else torch.cuda.current_device()] if cuda else []
    with torch.random.fork_rng(devices=forked):
        for key in net_keys:
            for batch in sizes:
                n = max(1, min(steps, len(data.train) // batch - WARM_ROUNDS - 1))
                cfg = bench_recipe(batch, precision, dev)
                common = dict(batch=batch, steps=n, device=dev, cfg=cfg)
                variants = []
                if loader:
                    step = dataloader_step(
                        key,
                        root,
                        batch=batch,
                        total_steps=WARM_ROUNDS + n,
                        device=dev,
                        workers=loader_workers,
                    )
                    variants.append(Variant(f"DataLoader ({loader_workers} workers)", step))
                variants.append(legacy_variant(key, data, **common))
                eager = at_once_variant(
                    "step, eager", key, data, trainings=1, graphs=False, **common
                )
                variants.append(eager)
                if cuda:
                    variants.append(
                        at_once_variant(
                            "step, CUDA graph", key, data, trainings=1, graphs=True, **common
                        )
                    )
                how = "graphs, streams" if cuda else "taking turns"
                for k in ks:
                    label = f"{k} at once ({how}), in total"
                    variants.append(
                        at_once_variant(label, key, data, trainings=k, graphs=cuda, **common)
                    )
                if fused_seeds:
                    variants.append(
                        fused_variant(key, data, seeds=fused_seeds, graphs=cuda, **common)
                    )
                seconds = interleaved(variants, steps=n, device=dev)
                one = BenchRow(key, batch, "", n, 1.0).epochs_per_s  # epochs in one second
                rates = [v.trainings * one / t for v, t in zip(variants, seconds, strict=True)]
                base = rates[variants.index(eager)]
                for v, value in zip(variants, rates, strict=True):
                    echo(f"{key:<4} {batch:>5}  {v.label:<40} {value:>9.4g} {value / base:>7.2f}x")
    if not cuda:
        echo("CUDA graphs: CUDA only; on a CPU the step runs eagerly")
    for n in counts:
        rate = run_concurrent(
            data_dir=root,
            device=str(dev),
            processes=n,
            net=net_keys[-1],
            batch=sizes[-1],
            steps=steps,
        )
        echo(
            f"{n} concurrent trainer process(es), net {net_keys[-1]}, batch {sizes[-1]}: "
            f"{rate:.3f} epochs/s in total"
        )


def seconds_per_image(
    spec, data: TrainVal, cfg: TrainConfig, *, device: torch.device, steps: int = 4
) -> float:
    """Seconds of training per image of ``spec`` with recipe ``cfg`` (its batch size and
    augmentation) on ``device``: ``steps`` optimizer steps timed after a one-step warm-up
    run, without validation (a cost estimate before anything is trained for real)."""
    batch = cfg.batch_size
    n = min(len(data.train), batch * steps)
    val = Split(data.val.x[:1], data.val.y[:1])
    probe = replace(cfg, epochs=1)

    def first(k: int) -> TrainVal:  # with their rows of a teacher's soft targets, if any
        soft = None if data.soft is None else data.soft.take(torch.arange(k))
        return TrainVal(data.info, Split(data.train.x[:k], data.train.y[:k]), val, soft=soft)

    train(spec, first(batch), probe, device=device)
    return train(spec, first(n), probe, device=device).train_time_s / n
