"""Training throughput: budgetnas's trainer against the seeds' DataLoader pipeline.

Both pipelines train the same network with the same batch size, optimizer and schedule for
the same number of optimizer steps, with the same augmentation (random rotation, as the seed
write-ups use); the seeds' way reads PIL images through per-sample torchvision transforms and
a ``DataLoader`` with worker processes, budgetnas's way slices a uint8 tensor already on the
device and rotates the batch there. Rates are reported as epochs (60,000 images) per second.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from budgetnas.space.zoo import ZOO
from budgetnas.trainers.augment import AugmentConfig
from budgetnas.trainers.data import Split, TrainVal, load_train_val
from budgetnas.trainers.datasets import default_data_dir
from budgetnas.trainers.evaluate import device_name, resolve_device
from budgetnas.trainers.recipe import ConfigError, TrainConfig
from budgetnas.trainers.train import init_model, train

EPOCH_IMAGES = 60_000
ROTATION = 7.0  # degrees, seed 001's augmentation


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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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
    _sync(device)
    return train(ZOO[spec_key].spec, subset, cfg, device=device).train_time_s


def time_dataloader(
    spec_key: str,
    data_dir: str,
    *,
    batch: int,
    steps: int,
    device: torch.device,
    workers: int = 2,
) -> float:
    """Seconds for ``steps`` optimizer steps the seeds' way: PIL + per-sample transforms +
    DataLoader workers + eager step; timed from a running iterator after 3 warm-up steps."""
    from torchvision import datasets, transforms

    tf = transforms.Compose(
        [
            transforms.RandomRotation(ROTATION),
            transforms.ToTensor(),
            transforms.Normalize((0.1307,), (0.3081,)),
        ]
    )
    ds = datasets.MNIST(data_dir, train=True, download=False, transform=tf)
    loader = torch.utils.data.DataLoader(
        ds,
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        drop_last=True,
    )
    spec = ZOO[spec_key].spec
    model = init_model(spec, seed=0, device=device)
    model.mean, model.std = 0.0, 1.0  # the loader normalises already
    opt = torch.optim.SGD(
        model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4
    )
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=steps + 3)
    batches = iter(loader)
    start = 0.0
    for i in range(steps + 3):
        if i == 3:
            _sync(device)
            start = time.perf_counter()
        x, y = next(batches)
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    _sync(device)
    return time.perf_counter() - start


def run_concurrent(
    *, data_dir: str, device: str, processes: int, net: str, batch: int, steps: int
) -> float:
    """Aggregate epochs/s of ``processes`` trainer processes running at once on one device."""
    threads = max(1, (os.cpu_count() or 1) // processes)
    code = (
        "import sys, torch; from budgetnas.trainers.bench import time_budgetnas; "
        "from budgetnas.trainers.data import load_train_val; "
        f"d = torch.device({device!r}); torch.set_num_threads({threads}); "
        f"data = load_train_val('mnist', data_dir={data_dir!r}, device=d); "
        "print('ready', flush=True); sys.stdin.readline(); "
        f"print(time_budgetnas({net!r}, data, batch={batch}, steps={steps}, device=d))"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        for _ in range(processes)
    ]
    for p in procs:  # wait until every process has its data loaded, then start them together
        assert p.stdout.readline().strip() == "ready"
    start = time.perf_counter()
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    for p in procs:
        p.communicate()
    wall = time.perf_counter() - start  # includes each process's 3-step warm-up
    if any(p.returncode for p in procs):
        raise RuntimeError("a benchmark process failed")
    return processes * steps * batch / EPOCH_IMAGES / wall


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
    echo: Callable[[str], None] = print,
) -> None:
    """``budgetnas bench``: one table row per (net, batch), then the concurrency sweep."""
    dev = resolve_device(device)
    root = str(Path(data_dir or default_data_dir()).resolve())
    net_keys = _csv(nets, "--nets")
    unknown = [k for k in net_keys if k not in ZOO]
    if unknown:
        raise ConfigError(f"no zoo entry {unknown[0]!r}; entries: {', '.join(ZOO)}")
    sizes = _csv(batches, "--batches", int)
    counts = _csv(concurrent, "--concurrent", int)
    echo(f"device: {device_name(dev)}, torch {torch.__version__}, {steps} steps per measurement")
    echo(f"{'net':<4} {'batch':>5} {'DataLoader ep/s':>15} {'budgetnas ep/s':>14} {'ratio':>6}")

    def show(loader: BenchRow, ours: BenchRow) -> None:
        echo(
            f"{ours.net:<4} {ours.batch:>5} {loader.epochs_per_s:>15.3f} "
            f"{ours.epochs_per_s:>14.3f} {ours.epochs_per_s / loader.epochs_per_s:>5.2f}x"
        )

    data = load_train_val("mnist", data_dir=root, device=dev)
    for key in net_keys:
        for batch in sizes:
            n = max(1, min(steps, len(data.train) // batch))
            t_loader = time_dataloader(
                key, root, batch=batch, steps=n, device=dev, workers=loader_workers
            )
            t_ours = time_budgetnas(key, data, batch=batch, steps=n, device=dev)
            show(
                BenchRow(key, batch, f"DataLoader ({loader_workers} workers)", n, t_loader),
                BenchRow(key, batch, "budgetnas", n, t_ours),
            )
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
