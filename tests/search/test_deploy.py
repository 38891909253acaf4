"""ONNX and int8 export (the deploy extra): outputs, accuracy, and the one-line error
without the extra."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from budgetnas.search.cli import app
from budgetnas.search.pipeline import run_search
from budgetnas.space.build import build
from budgetnas.space.zoo import ZOO
from budgetnas.trainers.data import DataConfig
from budgetnas.trainers.recipe import default_recipe
from budgetnas.trainers.train import train
from tests.helpers import cli_error, quick_config

runner = CliRunner()


@pytest.fixture(scope="module")
def run(tmp_path_factory, synthetic_root):
    out = tmp_path_factory.mktemp("deploy") / "run"
    run_search(quick_config(synthetic_root, out, trials=2), quiet=True)
    return out


def test_without_the_extra_export_says_what_to_install(run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    line = cli_error(
        runner.invoke(
            app, ["export", str(run), "--format", "onnx", "--out", str(tmp_path / "m.onnx")]
        )
    )
    assert line == 'error: ONNX export needs onnxruntime: pip install "budgetnas[deploy]"'
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--format", "tflite", "--out", "m.tflite"], "unknown format 'tflite'; choose py, onnx"),
        (["--int8", "--out", "m.py"], "--int8 needs --format onnx"),
        (["--format", "onnx", "--out", "m.py"], "--out must name a .onnx file"),
    ],
)
def test_bad_export_options_are_one_line(run, tmp_path, args, message):
    args = [a if not a.startswith("m.") else str(tmp_path / a) for a in args]
    assert cli_error(runner.invoke(app, ["export", str(run), *args])).startswith(
        f"error: {message}"
    )


ort = pytest.importorskip(
    "onnxruntime", reason="the deploy extra (onnx, onnxruntime) is not installed"
)
from budgetnas.search.handback.deploy import export_onnx, onnx_logits, quantize_int8  # noqa: E402


@pytest.mark.parametrize("key", sorted(ZOO))
def test_zoo_network_onnx_outputs_match_torch(key, tmp_path):
    spec = ZOO[key].spec
    torch.manual_seed(0)
    net = build(spec)
    with torch.no_grad():  # running statistics that are not the identity, so BN is exercised
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    net.eval()
    path = export_onnx(net, tmp_path / f"{key}.onnx", input_shape=(1, 28, 28))
    x = torch.rand(64, 1, 28, 28)
    with torch.no_grad():
        expected = net(x).numpy()
    got = onnx_logits(path, x.numpy())
    assert got.shape == expected.shape == (64, 10)
    assert np.abs(got - expected).max() < 1e-4
    int8 = quantize_int8(path, tmp_path / f"{key}.int8.onnx", x.numpy()[:32])
    assert onnx_logits(int8, x.numpy()).shape == (64, 10)
    assert int8.stat().st_size < path.stat().st_size


def test_export_cli_writes_onnx_and_int8(run, synthetic_root, tmp_path):
    out = tmp_path / "best.onnx"
    args = ["export", str(run), "--format", "onnx", "--int8", "--out", str(out)]
    result = runner.invoke(app, [*args, "--data-dir", str(synthetic_root)])
    assert result.exit_code == 0, result.stderr
    assert out.is_file() and (tmp_path / "best.int8.onnx").is_file()
    lines = result.stdout.splitlines()
    assert lines[1].startswith("weights: search seed 0 (1 ep x 300 img")
    assert lines[2].startswith(f"onnx: {out} (") and "max |onnxruntime - torch|" in lines[2]
    assert lines[3].startswith(f"int8: {tmp_path / 'best.int8.onnx'} (")
    again = runner.invoke(app, [*args, "--data-dir", str(synthetic_root)])
    assert cli_error(again).endswith("pass --force to overwrite")


@pytest.mark.slow
def test_int8_accuracy_of_seed_001_trained_on_mnist(mnist_root):
    data = DataConfig(data_dir=str(mnist_root), train_subset=12_000).load()
    net = train(ZOO["001"].spec, data, default_recipe(1)).model.eval()
    test = DataConfig(data_dir=str(mnist_root)).load_test()
    import tempfile
    from pathlib import Path

    from budgetnas.search.handback.deploy import deploy
    from budgetnas.search.handback.export import calibration_images

    with tempfile.TemporaryDirectory() as tmp:
        report = deploy(
            net,
            Path(tmp) / "001.onnx",
            test_x=test.x,
            test_y=test.y,
            calibration_x=calibration_images(data.train, 1000),
        )
    print(
        f"seed 001, 1 epoch on 12,000 images: float {report.onnx_acc:.2%}, "
        f"int8 {report.int8_acc:.2%}, max abs diff {report.max_abs_diff:.1e}"
    )
    assert report.max_abs_diff < 1e-4 and report.onnx_acc == report.torch_acc
    assert report.onnx_acc > 0.9
    assert abs(report.int8_acc - report.onnx_acc) <= 0.003


# ---- peak activation memory against the int8 model onnxruntime runs ---------------------

VIEWS = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity")  # no new buffer


def _trained_like(spec):
    """The built network with BatchNorm statistics that differ per layer (as after training;
    identical ones would be shared by the exporter)."""
    net = build(spec).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(n, generator=gen) - 0.5)
    return net


def onnxruntime_int8_peak(spec, tmp_path) -> int:
    """Peak bytes of live tensors while onnxruntime runs the int8 model of ``spec``, from
    the tensors themselves: the model as onnxruntime optimizes it (QDQ pairs fused into
    integer ops), run on one image with every node's output kept, in its node order. Counted
    from the quantized input image to the last tensor before the logits are dequantized."""
    import onnx

    shape = (spec.in_channels, spec.input_size, spec.input_size)
    path = export_onnx(_trained_like(spec), tmp_path / "f.onnx", input_shape=shape)
    rng = np.random.default_rng(0)
    int8 = quantize_int8(path, tmp_path / "q.onnx", rng.random((64, *shape), dtype=np.float32))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(str(int8), options, providers=["CPUExecutionProvider"])
    model = onnx.load(str(tmp_path / "opt.onnx"))
    graph = model.graph
    kept = {o.name for o in graph.output}
    for node in graph.node:
        graph.output.extend(onnx.ValueInfoProto(name=o) for o in node.output if o not in kept)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    image = rng.random((1, *shape), dtype=np.float32)
    names = [o.name for o in session.get_outputs()]
    tensors = dict(zip(names, session.run(None, {"images": image}), strict=True))
    size, born, last, root = {}, {}, {}, {}
    started = False
    for i, node in enumerate(graph.node):
        inputs = [root.get(n, n) for n in node.input if n in size or n in root]
        for name in inputs:
            last[name] = i
        started = started or node.op_type == "QuantizeLinear"
        if not started or node.output[0] == "logits":
            continue
        for out in node.output:
            if node.op_type in VIEWS and inputs:
                root[out] = inputs[0]
            else:
                size[out], born[out], last[out] = tensors[out].nbytes, i, i
    assert all(tensors[t].dtype.itemsize == 1 for t in size), "a float tensor inside the int8 run"
    return max(
        sum(n for t, n in size.items() if born[t] <= i <= last[t]) for i in range(len(graph.node))
    )


def _int8_cases():
    import random

    from budgetnas.space.blocks import BLOCK_KINDS
    from budgetnas.space.spec import ArchSpec, Conv, Head
    from tests.helpers import random_spec

    # GELU has no int8 kernel in onnxruntime (it runs in float: seed 003); a network that
    # pools the raw image first is quantized after that pooling
    cases = [(f"zoo-{k}", e.spec) for k, e in sorted(ZOO.items()) if k != "003"]
    cases += [
        (f"{kind}-{i}", ArchSpec(blocks=(Conv(8, pad=1), ex, Conv(4, pad=1)), head=Head()))
        for kind, cls in sorted(BLOCK_KINDS.items())
        for i, ex in enumerate(cls.examples())
        if "gelu" not in ex.to_dict().values()
    ]
    randoms = (random_spec(random.Random(700 + i)) for i in range(120))
    randoms = [s for s in randoms if "gelu" not in s.to_json() and s.blocks[0].kind != "pool"]
    cases += [(f"random-{i}", s) for i, s in enumerate(randoms[:24])]
    return cases


@pytest.mark.parametrize("name, spec", _int8_cases(), ids=[c[0] for c in _int8_cases()])
def test_int8_peak_activation_is_what_onnxruntime_holds(name, spec, tmp_path):
    from budgetnas.space.memory import INT8, activation_memory

    assert activation_memory(spec).bytes(INT8) == onnxruntime_int8_peak(spec, tmp_path)


def _block_cases():
    from budgetnas.space.blocks import BLOCK_KINDS
    from budgetnas.space.spec import ArchSpec, Conv, Head

    return [
        (f"{kind}-{i}", ArchSpec(blocks=(Conv(8, pad=1), ex, Conv(4, pad=1)), head=Head()))
        for kind, cls in sorted(BLOCK_KINDS.items())
        for i, ex in enumerate(cls.examples())
    ]


@pytest.mark.parametrize("name, spec", _block_cases(), ids=[c[0] for c in _block_cases()])
def test_every_block_kind_exports_to_onnx_and_int8(name, spec, tmp_path):
    net = _trained_like(spec)
    path = export_onnx(net, tmp_path / "m.onnx", input_shape=(1, 28, 28))
    x = torch.rand(16, 1, 28, 28)
    with torch.no_grad():
        expected = net(x).numpy()
    assert np.abs(onnx_logits(path, x.numpy()) - expected).max() < 1e-4
    int8 = quantize_int8(path, tmp_path / "m.int8.onnx", x.numpy())
    assert onnx_logits(int8, x.numpy()).shape == (16, 10)
