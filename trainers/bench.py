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
from budgetnas.trainers.augment import AugmentConfig, random_affine
from budgetnas.trainers.data import Split, TrainVal, load_train_val
from budgetnas.trainers.datasets import default_data_dir
from budgetnas.trainers.evaluate import device_name, resolve_device
from budgetnas.trainers.graphs import WARMUP_STEPS
from budgetnas.trainers.precision import recipe_settings
from budgetnas.trainers.recipe import ConfigError, TrainConfig
from budgetnas.trainers.step import autocast
from budgetnas.trainers.train import init_model, seeded, train

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
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
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


WARM_ROUNDS = WARMUP_STEPS + 2  # steps before a clock starts: past a graph's capture
AT_ONCE_CUDA = "1,2,4,8,16"


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
            _sync(device)
            start = time.perf_counter()
            for _ in range(size):
                v.advance()
            _sync(device)
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
    spec_key: str,
    data: TrainVal,
    *,
    batch: int,
    steps: int,
    trainings: int,
    device: torch.device,
    cfg: TrainConfig,
    graphs: bool,
) -> Variant:
    """``trainings`` trainings of one network (seeds 0, 1, ...) at once in this process
    (``trainers.many.AtOnce``; one training: the plain trainer), a round of steps a call."""
    from budgetnas.trainers.many import AtOnce, Job

    sub = bench_data(data, batch=batch, steps=WARM_ROUNDS + steps + 1)
    jobs = [Job(ZOO[spec_key].spec, sub, replace(cfg, seed=k)) for k in range(trainings)]
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
