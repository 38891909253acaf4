"""The seeds' way of training, timed: PIL images through per-sample torchvision transforms and a
``DataLoader`` with worker processes (as the seed write-ups train), and trainer processes run
side by side on one device."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from budgetnas.space.zoo import ZOO
from budgetnas.trainers.train import init_model


def sync_device(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def dataloader_step(
    spec_key: str,
    data_dir: str,
    *,
    batch: int,
    total_steps: int,
    device: torch.device,
    workers: int = 2,
) -> Callable[[], None]:
    """One optimizer step the seeds' way per call: PIL + per-sample transforms + DataLoader
    workers + eager step (``total_steps`` of them at most: the schedule's length)."""
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
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=total_steps)
    batches = iter(loader)

    def step() -> None:
        x, y = next(batches)
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()

    return step


def time_dataloader(
    spec_key: str,
    data_dir: str,
    *,
    batch: int,
    steps: int,
    device: torch.device,
    workers: int = 2,
) -> float:
    """Seconds for ``steps`` optimizer steps the seeds' way, timed from a running iterator
    after 3 warm-up steps."""
    step = dataloader_step(
        spec_key, data_dir, batch=batch, total_steps=steps + 3, device=device, workers=workers
    )
    for _ in range(3):
        step()
    sync_device(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync_device(device)
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


EPOCH_IMAGES = 60_000


ROTATION = 7.0  # degrees, seed 001's augmentation
