"""CUDA graphs of the training step and of the validation pass, with an eager fallback.

A network of ten thousand parameters is a few hundred tiny kernels a step: launched one by
one from Python, the GPU waits on the host. Captured once as a CUDA graph and replayed, the
whole step is one launch. ``GraphedStep`` runs a step eagerly for a few warm-up calls (on a
side stream, as a capture needs), captures it, and replays it from then on; ``GraphedEval``
does the same for the validation pass (eager the first time, a graph afterwards).

The capture itself (``cuda_capture``) is the only part here that needs CUDA; what calls it is
the same on every device, and the tests drive it on a CPU with a stand-in capture. Any
exception in warm-up, capture or the first replay leaves the training eager from then on,
with a ``GraphFallbackWarning`` naming the error: a run is never lost to a capture.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Sequence

import torch
from torch import nn

from budgetnas.trainers.data import Split
from budgetnas.trainers.step import validation_pass

__all__ = [
    "WARMUP_STEPS",
    "Capture",
    "GraphFallbackWarning",
    "GraphedEval",
    "GraphedStep",
    "cuda_capture",
    "use_graphs",
]

WARMUP_STEPS = 3  # eager steps before the capture (torch's own examples use 3 to 11)

# capture(fn, generators, stream) -> a function that replays what fn did
Capture = Callable[[Callable[[], None], Sequence[torch.Generator], object], Callable[[], None]]


class GraphFallbackWarning(UserWarning):
    """A CUDA graph could not be captured or replayed; the training went on eagerly."""


# "0" (set by --no-graphs, inherited by a search's helper processes): eager steps on CUDA too
GRAPHS_ENV = "BUDGETNAS_GRAPHS"


def use_graphs(device: torch.device, graphs: bool | None) -> bool:
    """Whether a training on ``device`` captures its step: on CUDA unless ``graphs`` is False
    (None: the process's default, on unless ``$BUDGETNAS_GRAPHS`` is 0); on other devices never
    (nothing to capture: the step is eager)."""
    if graphs is None:
        graphs = os.environ.get(GRAPHS_ENV, "1").strip().lower() not in ("0", "off", "no", "false")
    return device.type == "cuda" and graphs


def cuda_capture(
    fn: Callable[[], None],
    generators: Sequence[torch.Generator] = (),
    stream: torch.cuda.Stream | None = None,
) -> Callable[[], None]:
    """Capture ``fn`` as one CUDA graph (on ``stream``, or torch's capture stream) and return
    its replay. ``generators``: the CUDA generators ``fn`` draws from besides the default one,
    registered with the graph so that each replay advances them (torch >= 2.5; an older torch
    cannot capture them, and the caller falls back to eager)."""
    graph = torch.cuda.CUDAGraph()
    own = [g for g in generators if g.device.type == "cuda"]
    if own:
        register = getattr(graph, "register_generator_state", None)
        if register is None:
            raise RuntimeError(
                f"torch {torch.__version__} cannot capture draws from a generator of its own"
            )
        with warnings.catch_warnings():  # newer torch registers them itself and may say so
            warnings.simplefilter("ignore")
            for g in own:
                register(g)
    with torch.cuda.graph(graph, stream=stream):
        fn()
    return graph.replay


def _side_stream(device: torch.device, stream: torch.cuda.Stream | None):
    """A context running on ``stream`` (or a fresh side stream) after the current stream's
    work, and the current stream waiting for it after: the warm-up torch asks for before a
    capture. Nothing on other devices."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    side = stream if stream is not None else torch.cuda.Stream(device)

    @contextlib.contextmanager
    def run():
        current = torch.cuda.current_stream(device)
        side.wait_stream(current)
        with torch.cuda.stream(side):
            yield
        current.wait_stream(side)

    return run()


class GraphedStep:
    """``step`` called eagerly ``warmup`` times, then captured with ``capture`` and replayed.

    ``generators``: those ``step`` draws from (registered with the graph); ``stream``: the
    stream to warm up and capture on (None: a side stream, and torch's capture stream). A
    failure in a warm-up step, the capture or the first replay runs that step again eagerly
    (a step's own error then raises as it would without graphs); every call after is eager."""

    def __init__(
        self,
        step: Callable[[], None],
        *,
        device: torch.device,
        capture: Capture = cuda_capture,
        generators: Sequence[torch.Generator] = (),
        stream: torch.cuda.Stream | None = None,
        warmup: int = WARMUP_STEPS,
    ) -> None:
        self.step, self.device, self.capture = step, device, capture
        self.generators, self.stream, self.warmup = list(generators), stream, warmup
        self.calls = 0
        self.replay: Callable[[], None] | None = None
        self.replays = 0
        self.failed: str | None = None  # why the step runs eagerly, once it has failed

    @property
    def captured(self) -> bool:
        return self.replay is not None

    def __call__(self) -> None:
        self.calls += 1
        if self.failed is not None:
            self.step()
        elif self.replay is not None:
            self._replay()
        elif self.calls <= self.warmup:
            try:
                with _side_stream(self.device, self.stream):
                    self.step()
            except Exception as err:  # eager from here; a step's own error raises again
                self._fail("warm-up", err)
                self.step()
        else:
            try:
                self.replay = self.capture(self.step, self.generators, self.stream)
            except Exception as err:
                self._fail("capture", err)
                self.step()
                return
            self._replay()

    def _replay(self) -> None:
        assert self.replay is not None
        if self.replays:
            self.replay()
        else:  # the first replay: a failure falls back (the step is run eagerly instead)
            try:
                self.replay()
            except Exception as err:
                self.replay = None
                self._fail("first replay", err)
                self.step()
                return
        self.replays += 1

    def _fail(self, stage: str, err: Exception) -> None:
        self.failed = f"{stage}: {_one_line(err)}"
        warnings.warn(
            f"CUDA graph {self.failed}; training on without graphs",
            GraphFallbackWarning,
            stacklevel=3,
        )


def _one_line(err: Exception) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


class GraphedEval:
    """The validation accuracy of each copy of ``model`` on ``split``: eager the first call
    (the warm-up), captured by ``capture`` the second and replayed after (None: always eager).
    One host sync per call, to read the counts."""

    def __init__(
        self,
        model: nn.Module,
        split: Split,
        *,
        copies: int,
        batch_size: int,
        capture: Capture | None = None,
        stream: torch.cuda.Stream | None = None,
    ) -> None:
        self.model, self.split, self.batch_size = model, split, batch_size
        self.capture, self.stream = capture, stream
        self.correct = torch.zeros(copies, dtype=torch.long, device=split.y.device)
        self.calls = 0
        self.replay: Callable[[], None] | None = None

    def _pass(self) -> None:
        validation_pass(self.model, self.split, self.correct, batch_size=self.batch_size)

    @torch.no_grad()
    def __call__(self) -> list[float]:
        was_training = self.model.training
        self.model.eval()
        self.calls += 1
        try:
            if self.replay is not None:
                self.replay()
            elif self.capture is not None and self.calls > 1:
                try:
                    self.replay = self.capture(self._pass, (), self.stream)
                    self.replay()
                except Exception as err:
                    self.capture, self.replay = None, None
                    warnings.warn(
                        f"CUDA graph of the validation: {_one_line(err)}; validating without "
                        "graphs",
                        GraphFallbackWarning,
                        stacklevel=2,
                    )
                    self._pass()
            else:
                self._pass()
        finally:
            self.model.train(was_training)
        n = max(1, len(self.split))
        return [c / n for c in self.correct.tolist()]
