"""Several trainings at once in one process, their steps interleaved.

One small network's step leaves a GPU mostly idle, even as one CUDA graph. ``train_many``
keeps K trainings in flight in one process: each its own CUDA stream and its own graphs, their
steps replayed in turn (round robin), so that one training's kernels run while the host
queues the next one's. Each training is what ``train`` gives alone: its own seed's
initialisation, batches and augmentation, and its own stream of dropout draws (the device's
default generator's state is swapped in around each of its steps). On a CPU the steps simply
alternate eagerly: nothing runs concurrently there, the results are the same bits as one at a
time (tests/trainers/test_many.py), and the time is their sum.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from budgetnas.space.build import build
from budgetnas.space.spec import ArchSpec
from budgetnas.trainers import graphs as graph_module
from budgetnas.trainers.data import TrainVal
from budgetnas.trainers.recipe import TrainConfig
from budgetnas.trainers.train import Training, TrainResult

__all__ = ["AtOnce", "Job", "train_many"]


@dataclass(frozen=True)
class Job:
    """One training of ``train_many``: what ``train(spec, data, cfg, on_epoch=on_epoch)`` takes."""

    spec: ArchSpec
    data: TrainVal
    cfg: TrainConfig
    on_epoch: Callable[[int, float, float], None] | None = None


class _Randomness:
    """A training's share of torch's default generators (the CPU's and the device's), swapped
    in around each of its steps."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device if device.type == "cuda" else None
        self.cpu_state = torch.random.get_rng_state()
        self.cuda_state = None if self.cuda is None else torch.cuda.get_rng_state(self.cuda)

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        torch.random.set_rng_state(self.cpu_state)
        if self.cuda is not None:
            torch.cuda.set_rng_state(self.cuda_state, self.cuda)
        try:
            yield
        finally:
            self.cpu_state = torch.random.get_rng_state()
            if self.cuda is not None:
                self.cuda_state = torch.cuda.get_rng_state(self.cuda)


def _on_stream(stream: torch.cuda.Stream | None) -> contextlib.AbstractContextManager:
    return contextlib.nullcontext() if stream is None else torch.cuda.stream(stream)


class AtOnce:
    """Trainings in flight together on ``device``: ``round()`` takes one optimizer step of each
    one still training (swapping in its random state and, on CUDA, its stream), and keeps each
    one's result or error. ``train_many`` runs it to the end; ``trainers.bench`` times rounds."""

    def __init__(
        self, jobs: Sequence[Job] = (), *, device: torch.device, graphs: bool | None = None
    ) -> None:
        self.device = device
        graphed = graph_module.use_graphs(device, graphs)
        self.capture = graph_module.cuda_capture if graphed else None
        self.runs: list[Training | None] = []  # None: taken (``take``)
        self.randomness: list[_Randomness | None] = []
        self.streams: list[torch.cuda.Stream | None] = []
        self.results: list[TrainResult | Exception | None] = []  # None: in flight, or taken
        self.active: list[int] = []
        for job in jobs:
            self.add(job)

    def add(self, job: Job) -> int:
        """Start ``job`` beside the trainings in flight (seeding torch's default generators
        with its seed, as ``train`` does); returns its index in ``results``."""
        device = self.device
        stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        if stream is not None:
            stream.wait_stream(torch.cuda.current_stream(device))
        with _on_stream(stream):
            torch.random.default_generator.manual_seed(job.cfg.seed)  # as train's seeded
            if device.type == "cuda":
                with torch.cuda.device(device):
                    torch.cuda.manual_seed(job.cfg.seed)
            model = build(job.spec).to(device)
            gen = torch.Generator(device=device).manual_seed(job.cfg.seed)
            self.runs.append(
                Training(
                    model,
                    job.data,
                    job.cfg,
                    generators=[gen],
                    classes=job.spec.num_classes,
                    capture=self.capture,
                    stream=stream,
                    on_epoch=_one_copy(job.on_epoch),
                )
            )
        self.randomness.append(_Randomness(device))
        self.streams.append(stream)
        self.results.append(None)
        self.active.append(len(self.runs) - 1)
        return len(self.runs) - 1

    def round(self) -> bool:
        """One step of every training still in flight; False once none is."""
        for k in list(self.active):
            try:
                run, randomness = self.runs[k], self.randomness[k]
                assert run is not None and randomness is not None  # in flight: not taken
                with randomness.active(), _on_stream(self.streams[k]):
                    more = run.advance()
            except Exception as err:
                self.results[k] = err
                self.active.remove(k)
                continue
            if not more:
                (self.results[k],) = run.results()
                self.active.remove(k)
        return bool(self.active)

    def take(self, k: int) -> TrainResult | Exception:
        """The result of finished training ``k``, its training's buffers, graphs and stream
        let go (a long search starts thousands)."""
        result = self.results[k]
        if result is None:
            raise ValueError(f"training {k} is still in flight")
        # an error's traceback holds the training's frames: nothing here keeps it
        self.runs[k] = self.randomness[k] = self.streams[k] = self.results[k] = None
        return result


def train_many(
    jobs: Sequence[Job],
    *,
    device: torch.device | str = "cpu",
    graphs: bool | None = None,
) -> list[TrainResult | Exception]:
    """Train every job at once on ``device``, one optimizer step of each in turn; per job, its
    ``TrainResult`` or the exception that ended it (a ``TrainingError``, or what its
    ``on_epoch`` raised: a pruner's stop); the others train on. ``graphs`` as in ``train``:
    on CUDA each training captures its own step and validation, on its own stream. The caller's
    random state is left as it was. Each result's time is from its start to its end, the
    others' steps included."""
    device = torch.device(device)
    forked = []
    if device.type == "cuda":
        forked = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=forked):
        many = AtOnce(jobs, device=device, graphs=graphs)
        while many.round():
            pass
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return [r for r in many.results if r is not None]  # every job has its result by now


def _one_copy(
    on_epoch: Callable[[int, float, float], None] | None,
) -> Callable[[int, list[float], list[float]], None] | None:
    if on_epoch is None:
        return None
    return lambda epoch, accs, losses: on_epoch(epoch, accs[0], losses[0])
