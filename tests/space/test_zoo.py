from __future__ import annotations

import pytest
import torch

from budgetnas.space.build import build
from budgetnas.space.count import count_params
from budgetnas.space.render import render
from budgetnas.space.zoo import ZOO

PUBLISHED = {"000": 12_400, "001": 9_798, "002": 8_530, "004": 16_966}


def test_zoo_holds_the_five_seeds():
    assert sorted(ZOO) == ["000", "001", "002", "003", "004"]


@pytest.mark.parametrize("key", sorted(ZOO))
def test_counted_params_equal_published_and_built(key):
    entry = ZOO[key]
    counted = count_params(entry.spec)
    assert counted == sum(p.numel() for p in build(entry.spec).parameters())
    if entry.published_params is not None:
        assert counted == entry.published_params


@pytest.mark.parametrize("key, published", sorted(PUBLISHED.items()))
def test_published_numbers_are_the_ones_in_the_write_ups(key, published):
    assert ZOO[key].published_params == published


def test_seed_003_reading_is_documented_and_under_25k():
    entry = ZOO["003"]
    assert entry.published_params is None and entry.reading
    assert count_params(entry.spec) == 23_398 < 25_000


def _dropouts(net: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in net.modules() if "Dropout" in type(m).__name__]


def _zeroes_whole_channels(drop: torch.nn.Module) -> bool:
    """Whether ``drop`` (in training mode) zeroes whole feature maps of a (B, C, H, W) input,
    rather than single elements."""
    drop.train()
    with torch.no_grad():
        y = drop(torch.ones(64, 16, 6, 6))
    zero = y == 0
    assert zero.any() and not zero.all()
    return bool((zero.all(dim=(2, 3)) == zero.any(dim=(2, 3))).all())


def test_seed_000_drops_whole_channels_as_its_write_up_does():
    """The write-up of seed 000 uses Dropout2d(0.09) after each 3x3 conv: built, rendered and
    exported, its dropout zeroes whole channels; the other seeds' zero single elements (002's
    write-up says nn.Dropout; 001, 003 and 004 say dropout, no more)."""
    spec = ZOO["000"].spec
    torch.manual_seed(0)
    built = _dropouts(build(spec))
    assert len(built) == 5 and all(_zeroes_whole_channels(d) for d in built)
    assert all(d.p == 0.09 for d in built)
    source = render(spec)
    assert source.count("nn.Dropout2d(0.09)") == 5 and "nn.Dropout(" not in source
    namespace: dict = {"__file__": "/nonexistent/net.py", "__name__": "rendered"}
    exec(compile(source, "rendered.py", "exec"), namespace)
    rendered = _dropouts(namespace["Net"]())
    assert len(rendered) == 5 and all(_zeroes_whole_channels(d) for d in rendered)
    for key in ("001", "002", "004"):
        convs = _dropouts(build(ZOO[key].spec).features)
        assert convs and not any(_zeroes_whole_channels(d) for d in convs)
