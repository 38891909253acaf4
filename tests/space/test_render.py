from __future__ import annotations

import random

import pytest
import torch

from budgetnas.space.build import build
from budgetnas.space.render import render
from budgetnas.space.zoo import ZOO
from tests.helpers import random_spec

CASES = [e.spec for _, e in sorted(ZOO.items())] + [
    random_spec(random.Random(1000 + i)) for i in range(30)
]


def _exec(source: str) -> dict:
    namespace: dict = {"__file__": "/nonexistent/net.py", "__name__": "rendered"}
    exec(compile(source, "rendered.py", "exec"), namespace)
    return namespace


@pytest.mark.parametrize("spec", CASES)
def test_rendered_module_is_the_built_network(spec):
    torch.manual_seed(0)
    built = build(spec).eval()
    ns = _exec(render(spec, doc="a test"))
    net = ns["Net"]().eval()
    assert ns["NUM_PARAMS"] == sum(p.numel() for p in net.parameters())
    assert ns["SPEC"] == spec.to_dict()
    net.load_state_dict(built.state_dict())  # strict: same names, same shapes
    x = torch.rand(4, spec.in_channels, spec.input_size, spec.input_size)
    with torch.no_grad():
        assert torch.equal(net(x), built(x))


def test_rendered_module_imports_only_torch():
    source = render(ZOO["002"].spec)
    imports = {
        line.split()[1] for line in source.splitlines() if line.startswith(("import ", "from "))
    }
    assert imports == {"__future__", "pathlib", "torch"}
    assert "class Residual" in source
    assert "class Residual" not in render(ZOO["001"].spec)
