"""Peak activation memory of a spec, exactly, before anything is built.

Counted as a deployed runtime runs the network (onnxruntime, an int8 microcontroller
kernel library): one layer at a time, in the order of the layer plan (``space.build.plan``;
in a residual block the shortcut, then the body, then the sum), with each convolution or
linear layer *fused* with the BatchNorm right after it (folded into its weights) and the ReLU
after that (clamped in its output), so the fused op writes one tensor. Any other layer
(max-pool, average pooling, the residual sum, a BatchNorm after the activation, GELU) writes
its own. A tensor is alive from the op that writes it to the last op that reads it; while an
op runs, its inputs, its output and every tensor a later op still needs (a residual block's
input, kept for its shortcut) are alive at once. The peak is the largest such sum over the
run, in elements; times the element size it is bytes (4 for float32, 1 for int8). Layers
that return their input as it is (dropout at inference, flatten, an identity shortcut) write
nothing new. The input image counts from the first op on: it is the first op's input.

``tests/space/test_memory.py`` checks these figures against a traced run of the built module
(with the same fusion) and against the tensors of the int8 ONNX model onnxruntime runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from budgetnas.space.blocks import Layer, pool_out_size
from budgetnas.space.spec import ArchSpec, SpecError

FLOAT32, INT8 = 4, 1  # bytes per element

Shape = tuple[int, ...]
ALIASES = ("Dropout", "Dropout2d", "Flatten", "Identity")  # return their input (or a view of it)
SAME_SHAPE = ("BatchNorm2d", "ReLU", "GELU", "Sigmoid")
FUSING = ("Conv2d", "Linear")  # fuse the BatchNorm (convolutions) and the ReLU after them


def fused(layers: list[Layer] | tuple[Layer, ...]) -> list[Layer]:
    """``layers`` as a runtime runs them: a BatchNorm right after a convolution, and a ReLU
    right after a convolution or linear layer (or its folded BatchNorm), become aliases: they
    write nothing of their own."""
    out: list[Layer] = []
    chain = ""  # "" | the op of the fusing layer whose follower may still fuse
    for layer in layers:
        if layer.op == "BatchNorm2d" and chain == "Conv2d":
            out.append(Layer("Identity"))
            chain = "Conv2d+BN"
        elif layer.op == "ReLU" and chain:
            out.append(Layer("Identity"))
            chain = ""
        else:
            out.append(layer)
            chain = layer.op if layer.op in FUSING else ""
    return out


def _numel(shape: Shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _kw(layer: Layer, name: str, default):
    return dict(layer.kwargs).get(name, default)


def out_shape(layer: Layer, shape: Shape) -> Shape:
    """The output shape of one plain layer on an input of ``shape`` (no batch dimension)."""
    op = layer.op
    if op in SAME_SHAPE or op in ("Dropout", "Dropout2d", "Identity"):
        return shape
    if op == "Conv2d":
        c, h, w = shape
        k, pad = _kw(layer, "kernel_size", 1), _kw(layer, "padding", 0)
        stride = _kw(layer, "stride", 1)
        return (
            layer.args[1],
            (h + 2 * pad - k) // stride + 1,
            (w + 2 * pad - k) // stride + 1,
        )
    if op == "MaxPool2d":
        c, h, w = shape
        ceil = _kw(layer, "ceil_mode", False)
        return c, pool_out_size(h, ceil), pool_out_size(w, ceil)
    if op == "AvgPool2d":
        c, h, w = shape
        k = layer.args[0]
        return c, h // k, w // k
    if op == "AdaptiveAvgPool2d":
        n = layer.args[0]
        return shape[0], n, n
    if op == "Flatten":
        return (_numel(shape),)
    if op == "Linear":
        return (layer.args[1],)
    raise SpecError(f"no activation-memory rule for layer {op!r}; add one to space/memory.py")


@dataclass(frozen=True)
class MemoryStats:
    """Peak activation memory: per block (then the head) and in total, in elements."""

    blocks: tuple[int, ...]  # per block, in spec order; the head last
    peak: int  # elements

    def bytes(self, element_size: int = FLOAT32) -> int:
        return self.peak * element_size

    def block_bytes(self, element_size: int = FLOAT32) -> tuple[int, ...]:
        return tuple(b * element_size for b in self.blocks)


class _Run:
    """Walks layers, keeping the size of the current tensor and of tensors held for later."""

    def __init__(self, shape: Shape) -> None:
        self.shape = shape
        self.size = _numel(shape)  # the current tensor: the next layer's input
        self.held = 0  # tensors a later layer still reads (a residual block's input)
        self.peak = 0

    def _live(self, *sizes: int) -> None:
        self.peak = max(self.peak, self.held + sum(sizes))

    def layer(self, layer: Layer) -> None:
        if layer.op == "Residual":
            self.residual(*layer.args)
            return
        if layer.op == "SqueezeExcite":
            self.squeeze_excite(*layer.args)
            return
        shape = out_shape(layer, self.shape)
        if layer.op in ALIASES:  # nothing new is written
            self._live(self.size)
            self.shape = shape
            return
        out = _numel(shape)
        self._live(self.size, out)
        self.shape, self.size = shape, out

    def squeeze_excite(self, gate: tuple[Layer, ...]) -> None:
        """x is kept while its gate is computed from it (a global pool, then tensors of C
        values), then x times the gate is written while both are read."""
        x_shape, x = self.shape, self.size
        held = self.held
        first, *rest = fused(gate)
        shape = out_shape(first, x_shape)
        out = _numel(shape)
        self._live(x, out)  # the pool reads x
        self.held, self.shape, self.size = held + x, shape, out  # x waits for the product
        for layer in rest:
            self.layer(layer)
        gate_out = self.size
        self.held = held
        self._live(x, gate_out, x)  # the product is written while x and the gate are read
        self.shape, self.size = x_shape, x

    def residual(self, body: tuple[Layer, ...], shortcut: tuple[Layer, ...]) -> None:
        x_shape, x = self.shape, self.size
        held = self.held
        if shortcut:  # the 1x1 projection runs first (build.Residual); its output waits
            (proj,) = fused(shortcut)
            short = _numel(out_shape(proj, x_shape))
            self._live(x, short)
            waiting = short
        else:  # the identity: x itself is the second summand, kept through the body
            short, waiting = x, 0
        # the body's first op reads x (its last use, unless x is the identity summand)
        self.held = held + waiting
        first, *rest = fused(body)
        shape = out_shape(first, x_shape)
        out = x if first.op in ALIASES else _numel(shape)
        self._live(x, 0 if first.op in ALIASES else out)
        self.held, self.shape, self.size = held + short, shape, out
        for layer in rest:
            self.layer(layer)
        body_out = self.size
        self.held = held
        self._live(body_out, short, body_out)  # the sum is written while both are read
        self.size = body_out


@lru_cache(maxsize=65536)
def activation_memory(spec: ArchSpec) -> MemoryStats:
    """Peak activation memory of the network, per block and in total (elements)."""
    walk = spec.shapes()
    c, s = walk[0]
    run = _Run((c, s, s))
    blocks = []
    for block, (c_in, _) in zip(spec.blocks, walk[:-1], strict=True):
        run.peak = 0
        for layer in fused(block.layers(c_in)):
            run.layer(layer)
        blocks.append(run.peak)
    run.peak = 0
    c, s = walk[-1]
    for layer in fused(spec.head.layers(c, s, spec.num_classes)):
        run.layer(layer)
    blocks.append(run.peak)
    return MemoryStats(blocks=tuple(blocks), peak=max(blocks))


def peak_activation_bytes(spec: ArchSpec, element_size: int = FLOAT32) -> int:
    return activation_memory(spec).bytes(element_size)
