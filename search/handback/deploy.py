"""Networks out of PyTorch: ONNX, and int8 by post-training static quantization.

Needs the ``deploy`` extra (``pip install "budgetnas[deploy]"``: onnx and onnxruntime); without
it, ``need_deploy`` raises one line that says so. The ONNX graph is the built module as it
runs at inference (dropout gone, a BatchNorm right after a convolution folded into it, any
other with its running statistics), input ``images``
(B, C, H, W) pixel values in [0, 1], output ``logits`` (B, classes), any batch size.

int8: QDQ format; every op between the input and the logits quantized (convolutions, linear
layers, pooling, the residual sum; a ReLU folded into the op before it), weights per output
channel (7-bit range, see ``quantize_int8``), activations uint8 calibrated (min-max) on images
of the *training* split only; the test split only reports. A BatchNorm that does not follow a
convolution (seed 000's conv -> ReLU -> BN) is exported as a depthwise 1x1 convolution, the
same map, so it too runs in integers.
"""

from __future__ import annotations

import inspect
import logging
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from budgetnas.search.errors import SearchError

CALIBRATION_IMAGES = 1000
OPSET = 17
# Quantized ops: with Relu among them, a ReLU after a convolution is fused into its output
# range, and every tensor between the input and the logits is int8 (see space.memory): the
# ops of the search space all have int8 kernels; GELU (seed 003) has none and runs in float.
OPS = [
    "Conv",
    "Gemm",
    "MatMul",
    "Relu",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "Add",
    "Mul",
    "Sigmoid",
    "Flatten",
    "Reshape",
]


def need_deploy() -> None:
    """Raise one line naming the extra when onnx or onnxruntime is missing."""
    missing = []
    for name in ("onnx", "onnxruntime"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise SearchError(
            f'ONNX export needs {" and ".join(missing)}: pip install "budgetnas[deploy]"'
        )


class _PoolAsMatMul(nn.Module):
    """Adaptive average pooling as one matrix product: exact for any input and output size
    (ONNX has no adaptive pooling, and the exporter refuses sizes that do not divide)."""

    def __init__(self, size: int, out: int) -> None:
        super().__init__()
        pool = torch.zeros(out * out, size * size)
        for i in range(out):
            r0, r1 = (i * size) // out, -(-((i + 1) * size) // out)
            for j in range(out):
                c0, c1 = (j * size) // out, -(-((j + 1) * size) // out)
                window = torch.zeros(size, size)
                window[r0:r1, c0:c1] = 1.0 / ((r1 - r0) * (c1 - c0))
                pool[i * out + j] = window.flatten()
        self.register_buffer("pool", pool.t().contiguous())  # (size*size, out*out)
        self.out = out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape  # (B, C, H, W)
        y = x.reshape(b, c, h * w) @ self.pool  # (B, C, out*out)
        return y.reshape(b, c, self.out, self.out)


def _fold_batchnorm(net: nn.Module) -> None:
    """Fold every BatchNorm that directly follows a convolution into it (exact at inference:
    the BN is an affine map of the conv's output); the BN becomes an identity."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for seq in [m for m in net.modules() if isinstance(m, nn.Sequential)]:
        layers = list(seq)
        for i in range(len(layers) - 1):
            conv, bn = layers[i], layers[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                seq[i] = fuse_conv_bn_eval(conv, bn)
                seq[i + 1] = nn.Identity()


def _batchnorm_as_conv(bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A BatchNorm at inference is a per-channel affine map: the same as a depthwise 1x1
    convolution, which int8 runtimes run in integers (a BatchNorm they run in float)."""
    c = bn.num_features
    scale = (bn.weight if bn.affine else torch.ones(c)) / torch.sqrt(bn.running_var + bn.eps)
    shift = (bn.bias if bn.affine else torch.zeros(c)) - bn.running_mean * scale
    conv = nn.Conv2d(c, c, kernel_size=1, groups=c, bias=True)
    with torch.no_grad():
        conv.weight.copy_(scale.reshape(c, 1, 1, 1))
        conv.bias.copy_(shift)
    return conv


def _exportable(net: nn.Module, input_shape: tuple[int, int, int]) -> nn.Module:
    """A copy of ``net`` as it runs at inference, in ops ONNX has: batch norms after convs
    folded into them, any other batch norm as a depthwise 1x1 convolution, adaptive pools
    that do not divide their input as matrix products (same outputs)."""
    import copy

    net = copy.deepcopy(net).eval()
    _fold_batchnorm(net)
    for name, module in list(net.named_modules()):
        if isinstance(module, nn.BatchNorm2d):
            parent_name, _, child = name.rpartition(".")
            parent = net.get_submodule(parent_name) if parent_name else net
            setattr(parent, child, _batchnorm_as_conv(module))
    sizes: dict[str, int] = {}

    def record(name: str):
        def hook(module, inputs, output) -> None:
            sizes[name] = inputs[0].shape[-1]

        return hook

    hooks = [
        m.register_forward_hook(record(name))
        for name, m in net.named_modules()
        if isinstance(m, nn.AdaptiveAvgPool2d)
    ]
    with torch.no_grad():
        net(torch.zeros(1, *input_shape))
    for h in hooks:
        h.remove()
    for name, size in sizes.items():
        parent_name, _, child = name.rpartition(".")
        parent = net.get_submodule(parent_name) if parent_name else net
        pool = getattr(parent, child)
        out = pool.output_size if isinstance(pool.output_size, int) else pool.output_size[0]
        if size % out:
            setattr(parent, child, _PoolAsMatMul(size, out))
    return net


def export_onnx(net: nn.Module, path: Path, *, input_shape: tuple[int, int, int]) -> Path:
    """Write ``net`` (in eval mode) as an ONNX model with a dynamic batch dimension."""
    need_deploy()
    net = _exportable(net.eval().cpu(), input_shape)
    example = torch.rand(2, *input_shape)
    kwargs = {
        "input_names": ["images"],
        "output_names": ["logits"],
        "dynamic_axes": {"images": {0: "batch"}, "logits": {0: "batch"}},
        "opset_version": OPSET,
    }
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False  # the TorchScript exporter: no onnxscript needed
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (example,), str(path), **kwargs)
    return compact(path)


def compact(path: Path) -> Path:
    """Rename every node and inner tensor of an ONNX file to a short id, in place: the names
    the exporter and the quantizer write (``/features/features.1/Relu_output_0_Dequantize..``)
    can outweigh a small network's weights. The graph's input and output keep their names."""
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    keep = {v.name for v in graph.input} | {v.name for v in graph.output}
    names: dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in keep:
            return name
        return names.setdefault(name, f"t{len(names)}")

    for init in graph.initializer:
        init.name = short(init.name)
    for node in graph.node:
        node.name = ""
        node.input[:] = [short(n) for n in node.input]
        node.output[:] = [short(n) for n in node.output]
    for info in graph.value_info:
        info.name = short(info.name)
    onnx.save(model, str(path))
    return path


def onnx_logits(path: Path, images: np.ndarray, *, batch: int = 2000) -> np.ndarray:
    """onnxruntime's outputs for float images (N, C, H, W) in [0, 1], on the CPU."""
    need_deploy()
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    out = [
        session.run(None, {"images": images[i : i + batch]})[0]
        for i in range(0, len(images), batch)
    ]
    return np.concatenate(out)


def quantize_int8(float_path: Path, int8_path: Path, calibration: np.ndarray) -> Path:
    """Post-training static quantization of an ONNX model, calibrated on ``calibration``
    (float images from the training split)."""
    need_deploy()
    from onnxruntime import quantization as q

    class Reader(q.CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(np.array_split(calibration, max(1, len(calibration) // 100)))

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {"images": batch}

    root = logging.getLogger()  # the quantizer advises on the root logger; keep it quiet
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        q.quantize_static(
            str(float_path),
            str(int8_path),
            Reader(),
            quant_format=q.QuantFormat.QDQ,
            per_channel=True,
            activation_type=q.QuantType.QUInt8,
            weight_type=q.QuantType.QInt8,
            # 7-bit weights: x86 int8 kernels (VPMADDUBSW) can saturate uint8 x int8 sums;
            # with full 8-bit weights seed 001 lost 0.57 points to that, with 7 bits none
            reduce_range=True,
            op_types_to_quantize=OPS,
        )
    finally:
        root.setLevel(level)
    return compact(int8_path)


@dataclass(frozen=True)
class OnnxReport:
    path: Path
    size_bytes: int
    max_abs_diff: float  # |onnxruntime - torch| over the test images
    torch_acc: float
    onnx_acc: float
    int8_path: Path | None = None
    int8_size_bytes: int | None = None
    int8_acc: float | None = None


def to_numpy_images(x: torch.Tensor) -> np.ndarray:
    """uint8 (N, C, H, W) -> float32 in [0, 1], as the networks take them."""
    return (x.float() / 255).cpu().numpy()


def deploy(
    net: nn.Module,
    path: Path,
    *,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    calibration_x: torch.Tensor | None = None,
) -> OnnxReport:
    """Export ``net`` to ``path`` (and, with calibration images, an int8 model beside it as
    ``*.int8.onnx``); compare with PyTorch and measure accuracy on the test images."""
    need_deploy()
    images = to_numpy_images(test_x)
    labels = test_y.cpu().numpy()
    export_onnx(net, path, input_shape=tuple(images.shape[1:]))
    with torch.no_grad():
        chunks = [torch.from_numpy(images[i : i + 2000]) for i in range(0, len(images), 2000)]
        ref = torch.cat([net(chunk) for chunk in chunks]).numpy()
    got = onnx_logits(path, images)
    report = OnnxReport(
        path=path,
        size_bytes=path.stat().st_size,
        max_abs_diff=float(np.abs(got - ref).max()),
        torch_acc=float((ref.argmax(1) == labels).mean()),
        onnx_acc=float((got.argmax(1) == labels).mean()),
    )
    if calibration_x is None:
        return report
    int8_path = path.with_suffix(".int8.onnx")
    quantize_int8(path, int8_path, to_numpy_images(calibration_x))
    int8 = onnx_logits(int8_path, images)
    return replace(
        report,
        int8_path=int8_path,
        int8_size_bytes=int8_path.stat().st_size,
        int8_acc=float((int8.argmax(1) == labels).mean()),
    )
