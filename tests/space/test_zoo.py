from __future__ import annotations

import pytest

from budgetnas.space.build import build
from budgetnas.space.count import count_params
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
