"""The training loop: data on the device, index-slice batches, one host sync per epoch.

``train(spec, data, cfg)`` builds the network from the spec and trains it with every random
draw (initialisation, batch order, augmentation, dropout) coming from the recipe's seed (the
caller's random state is restored afterwards). It evaluates on the validation split after
every epoch, handing each value to ``on_epoch`` (where a pruner may stop the run by raising).

Each optimizer step is ``trainers.step.TrainStep``: on fixed buffers, with no host sync, so
that on CUDA it is captured once as a CUDA graph and replayed (``trainers.graphs``); on a CPU
it runs eagerly and computes what the loop before it computed, to the bit. ``Training`` is the
loop as an object advanced one step at a time: ``train`` drives one, ``trainers.many`` drives
several side by side, and ``trainers.fused`` one holding several seeds of a network.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from budgetnas.space.build import build
from budgetnas.space.spec import ArchSpec
from budgetnas.trainers import graphs as graph_module
from budgetnas.trainers.data import TrainVal
from budgetnas.trainers.distill import check_targets
from budgetnas.trainers.ema import WeightAverage
from budgetnas.trainers.evaluate import device_name
from budgetnas.trainers.recipe import TrainConfig
from budgetnas.trainers.step import TrainStep, autocast

__all__ = [
    "TrainResult",
    "Training",
    "TrainingError",
    "autocast",
    "init_model",
    "seeded",
    "train",
]


class TrainingError(Exception):
    """A training run went wrong in a way that belongs to the candidate, not to the search."""


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


@contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Torch's default generators of the CPU and of ``device``, seeded with ``seed`` inside the
    block and restored after it: layers that draw from them (initialisation, dropout) repeat
    exactly for a seed, whatever ran before, and the caller's random state is left as it was."""
    cuda = (
        [device.index if device.index is not None else torch.cuda.current_device()]
        if (device.type == "cuda")
        else []
    )
    with torch.random.fork_rng(devices=cuda):
        torch.random.default_generator.manual_seed(seed)
        if cuda:
            with torch.cuda.device(cuda[0]):
                torch.cuda.manual_seed(seed)
        yield


def init_model(spec: ArchSpec, *, seed: int, device: torch.device) -> nn.Module:
    """The spec's network, initialised from ``seed`` without touching the global RNG."""
    with seeded(seed, torch.device("cpu")):
        return build(spec).to(device)


def train(
    spec: ArchSpec,
    data: TrainVal,
    cfg: TrainConfig,
    *,
    device: torch.device | str = "cpu",
    on_epoch: Callable[[int, float, float], None] | None = None,
    graphs: bool | None = None,
) -> TrainResult:
    """Train ``spec`` on ``data.train``, validating after every epoch.

    With ``cfg.ema`` the network returned and validated is the weights' moving average
    (``trainers.ema``); with ``cfg.distill`` the loss learns from ``data.soft``, the soft
    targets of the recipe's teacher (``trainers.distill``).
    ``on_epoch(epoch, val_acc, train_loss)`` is called after each epoch (0-based); an exception
    it raises stops training and propagates (how a pruner ends a trial).
    ``graphs``: on CUDA, capture the step and the validation as CUDA graphs (None: yes; False:
    eager). It is no part of the recipe: it changes a result by float rounding at most. On
    other devices the step runs eagerly whatever it says.
    """
    device = torch.device(device)
    with seeded(cfg.seed, device):
        return _train(spec, data, cfg, device=device, on_epoch=on_epoch, graphs=graphs)


def _train(
    spec: ArchSpec,
    data: TrainVal,
    cfg: TrainConfig,
    *,
    device: torch.device,
    on_epoch: Callable[[int, float, float], None] | None,
    graphs: bool | None,
) -> TrainResult:
    model = build(spec).to(device)  # initialised from the seeded CPU generator
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    capture = graph_module.cuda_capture if graph_module.use_graphs(device, graphs) else None

    def each_epoch(epoch: int, accs: list[float], losses: list[float]) -> None:
        if on_epoch is not None:
            on_epoch(epoch, accs[0], losses[0])

    run = Training(
        model,
        data,
        cfg,
        generators=[gen],
        classes=spec.num_classes,
        capture=capture,
        on_epoch=each_epoch,
    )
    while run.advance():
        pass
    (result,) = run.results()
    if isinstance(result, Exception):
        raise result
    return result


class Training:
    """One training in progress, advanced an optimizer step at a time (``advance``).

    ``model`` holds ``len(generators)`` copies of a network (one, or several fused:
    ``trainers.fused``), already on the device and initialised; ``generators[i]`` (on the
    device) draws copy i's batch order and augmentation. Validation after each epoch gives each
    copy's accuracy and mean training loss to ``on_epoch(epoch, accs, losses)``. ``split``
    turns the trained model into one network per copy (default: the model itself).

    ``capture`` (``trainers.graphs.cuda_capture`` on CUDA) captures the step after a few eager
    ones and the validation after its first pass; None: everything eager. ``stream``: the CUDA
    stream the training runs on, when several run at once (``trainers.many``).

    A copy whose epoch loss is not finite has failed: its result is a ``TrainingError``; with
    one copy, ``advance`` raises it (the others of a fused model train on, unaffected).
    """

    def __init__(
        self,
        model: nn.Module,
        data: TrainVal,
        cfg: TrainConfig,
        *,
        generators: Sequence[torch.Generator],
        classes: int,
        capture: graph_module.Capture | None = None,
        stream: torch.cuda.Stream | None = None,
        on_epoch: Callable[[int, list[float], list[float]], None] | None = None,
        split: Callable[[nn.Module], list[nn.Module]] | None = None,
    ) -> None:
        device = next(model.parameters()).device
        self.cfg, self.device, self.on_epoch = cfg, device, on_epoch
        self.copies = len(generators)
        self.split = split
        layout = torch.channels_last if cfg.channels_last else torch.contiguous_format
        model = model.to(memory_format=layout)
        soft = None
        if cfg.distill:
            check_targets(cfg, data.soft, data.train, classes)
            soft = data.soft.logits.to(device)  # (N, classes): row i for training image i
        average = WeightAverage(model, cfg.ema) if cfg.ema else None
        self.model = model
        self.trained = model if average is None else average.model  # validated and returned
        split_train = data.train.to(device)
        self.val = data.val.to(device)
        steps = len(split_train) // min(cfg.batch_size, len(split_train))
        self.step = TrainStep(
            model,
            split_train,
            cfg,
            generators=generators,
            total_steps=cfg.epochs * steps,
            soft=soft,
            average=average,
            layout=layout,
        )
        self.runner: Callable[[], None] = (
            self.step
            if capture is None
            else graph_module.GraphedStep(
                self.step, device=device, capture=capture, generators=generators, stream=stream
            )
        )
        self.validate = graph_module.GraphedEval(
            self.trained,
            self.val,
            copies=self.copies,
            batch_size=cfg.eval_batch_size,
            capture=capture,
            stream=stream,
        )
        self.epoch = 0
        self.in_epoch = 0  # steps taken in the current epoch
        self.val_curves: list[list[float]] = [[] for _ in range(self.copies)]
        self.loss_curves: list[list[float]] = [[] for _ in range(self.copies)]
        self.failed: list[TrainingError | None] = [None] * self.copies
        self.start = time.perf_counter()
        self.seconds = 0.0

    @property
    def done(self) -> bool:
        return self.epoch >= self.cfg.epochs or all(f is not None for f in self.failed)

    def advance(self) -> bool:
        """One optimizer step (an epoch's start before its first, its validation after its
        last); False once training is over."""
        if self.done:
            return False
        if self.in_epoch == 0:
            self.step.start_epoch()
        self.runner()
        self.in_epoch += 1
        if self.in_epoch == self.step.steps:
            self.in_epoch = 0
            self._end_epoch()
            self.epoch += 1
            if self.done:
                self.seconds = time.perf_counter() - self.start
        return not self.done

    def _end_epoch(self) -> None:
        losses = self.step.epoch_losses()  # one host sync
        for i, loss in enumerate(losses):
            if self.failed[i] is None and not math.isfinite(loss):
                self.failed[i] = TrainingError(
                    f"training loss became {loss} in epoch {self.epoch + 1}"
                )
        if self.copies == 1 and self.failed[0] is not None:
            raise self.failed[0]
        accs = self.validate()  # with one copy, what trainers.evaluate.evaluate counts
        for curve, value in zip(self.val_curves, accs, strict=True):
            curve.append(value)
        for curve, value in zip(self.loss_curves, losses, strict=True):
            curve.append(value)
        if self.on_epoch is not None:
            self.on_epoch(self.epoch, accs, losses)

    def results(self) -> list[TrainResult | TrainingError]:
        """Per copy: its result (the network, its curves; the time is the training's, shared
        equally between the copies), or the ``TrainingError`` that ended it."""
        models = [self.trained] if self.split is None else self.split(self.trained)
        seconds = (self.seconds or time.perf_counter() - self.start) / self.copies
        out: list[TrainResult | TrainingError] = []
        for i, model in enumerate(models):
            failed = self.failed[i]
            out.append(
                failed
                if failed is not None
                else TrainResult(
                    model=model,
                    val_curve=self.val_curves[i],
                    loss_curve=self.loss_curves[i],
                    train_time_s=seconds,
                    device=device_name(self.device),
                )
            )
        return out
