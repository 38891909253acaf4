"""``render(spec) -> str``: the network as a standalone Python module that imports only torch.

The module prints the same layer plan that ``space.build`` instantiates, so its parameter
names match a trained ``Net``'s ``state_dict`` and its weights load as they are.
"""

from __future__ import annotations

import inspect
import pprint

from budgetnas.space.blocks import Layer
from budgetnas.space.build import Residual, SqueezeExcite, plan
from budgetnas.space.count import analyze
from budgetnas.space.spec import ArchSpec

# The exported module defines the same composite as ``space.build``: its source, not a copy.
_RESIDUAL_CLASS = "\n\n" + inspect.getsource(Residual)
_SE_CLASS = "\n\n" + inspect.getsource(SqueezeExcite)


def _layer_source(layer: Layer, indent: int) -> str:
    pad = " " * indent
    if layer.op == "SqueezeExcite":
        (gate,) = layer.args
        inner = "".join(_layer_source(g, indent + 8) for g in gate)
        return f"{pad}SqueezeExcite(\n{pad}    nn.Sequential(\n{inner}{pad}    ),\n{pad}),\n"
    if layer.op == "Residual":
        body, shortcut = layer.args
        inner = "".join(_layer_source(b, indent + 8) for b in body)
        if shortcut:
            short = "nn.Sequential(\n" + "".join(_layer_source(s, indent + 8) for s in shortcut)
            short += f"{pad}    ),\n"
        else:
            short = "nn.Identity(),\n"
        return (
            f"{pad}Residual(\n{pad}    nn.Sequential(\n{inner}{pad}    ),\n"
            f"{pad}    {short}{pad}),\n"
        )
    args = [repr(a) for a in layer.args] + [f"{k}={v!r}" for k, v in layer.kwargs]
    return f"{pad}nn.{layer.op}({', '.join(args)}),\n"


def _uses(layers: list[Layer], op: str) -> bool:
    return any(layer.op == op for layer in layers)


def render(spec: ArchSpec, *, doc: str = "") -> str:
    """Source of a module defining ``Net``, ``NUM_PARAMS``, ``MACS``, ``SPEC`` and ``load``.

    ``doc`` is added to the module docstring (where it came from, its accuracy).
    """
    features, head = plan(spec)
    stats = analyze(spec)
    c, s = spec.in_channels, spec.input_size
    spec_src = pprint.pformat(spec.to_dict(), width=96, compact=True, sort_dicts=True)
    lines = [
        f'"""A {stats.params:,}-parameter CNN for {c}x{s}x{s} images, {spec.num_classes} classes.',
        "",
        "Standalone: needs only torch. Input: float tensor (B, "
        f"{c}, {s}, {s}) of pixel values in [0, 1];",
        f"output: (B, {spec.num_classes}) logits. Architecture: {spec.summary()}",
    ]
    if doc:
        lines += ["", *doc.strip().splitlines()]
    lines += [
        "",
        "    net = load()                    # weights from the .pt file beside this module",
        f"    logits = net(images)            # images: (B, {c}, {s}, {s}) in [0, 1]",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "from pathlib import Path",
        "",
        "import torch",
        "from torch import nn",
        "",
        f"NUM_PARAMS = {stats.params}",
        f"MACS = {stats.macs}",
        f"MEAN, STD = {spec.norm[0]!r}, {spec.norm[1]!r}",
        'WEIGHTS = Path(__file__).with_suffix(".pt")',
        f"SPEC = {spec_src}",
    ]
    src = "\n".join(lines) + "\n"
    if _uses(features, "Residual"):
        src += _RESIDUAL_CLASS
    if _uses(features, "SqueezeExcite"):
        src += _SE_CLASS
    src += (
        "\n\nclass Net(nn.Module):\n"
        "    def __init__(self) -> None:\n"
        "        super().__init__()\n"
        "        self.features = nn.Sequential(\n"
        + "".join(_layer_source(layer, 12) for layer in features)
        + "        )\n"
        "        self.head = nn.Sequential(\n"
        + "".join(_layer_source(layer, 12) for layer in head)
        + "        )\n"
        "\n"
        "    def forward(self, x: torch.Tensor) -> torch.Tensor:\n"
        f"        x = (x - MEAN) / STD  # (B, {c}, {s}, {s})\n"
        "        x = self.features(x)  # (B, C, H, W)\n"
        f"        return self.head(x)  # (B, {spec.num_classes})\n"
        "\n\n"
        'def load(path: str | Path | None = None, map_location: str = "cpu") -> Net:\n'
        '    """A ``Net`` with the trained weights (default: the .pt file beside this module)."""\n'
        "    net = Net()\n"
        "    state = torch.load(path or WEIGHTS, map_location=map_location, weights_only=True)\n"
        "    net.load_state_dict(state)\n"
        "    return net.eval()\n"
    )
    return src
