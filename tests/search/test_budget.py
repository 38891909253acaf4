from __future__ import annotations

import pytest

from budgetnas.search.errors import SearchError
from budgetnas.search.units import format_params, parse_budget


@pytest.mark.parametrize(
    "text, value",
    [
        ("10000", 10_000),
        ("10k", 10_000),
        ("10K", 10_000),
        ("12.5k", 12_500),
        (" 25k ", 25_000),
        ("1.2M", 1_200_000),
        ("1m", 1_000_000),
        ("999", 999),
        (".5k", 500),
    ],
)
def test_parse_budget(text, value):
    assert parse_budget(text) == value


@pytest.mark.parametrize(
    "text",
    ["", "abc", "10x", "-5", "-5k", "1e4", "10 000", "k", "12.3456k", "0", "0k", "1.5", "nan"],
)
def test_bad_budgets(text):
    with pytest.raises(SearchError, match="bad budget"):
        parse_budget(text)


def test_format_params():
    assert [format_params(n) for n in (812, 9798, 12_400, 1_500_000)] == [
        "812",
        "9.8K",
        "12.4K",
        "1.5M",
    ]


def test_large_budgets_print_without_an_exponent():
    """``--budget 2000M`` once printed as '2e+03M'; a count that rounds up to 1,000 of a unit
    is shown in the next unit."""
    assert [
        format_params(n)
        for n in (2_000_000_000, 2_340_000_000, 999_999, 999_999_999, 99_950, 5 * 10**12)
    ] == ["2G", "2.34G", "1M", "1G", "100K", "5000G"]
    assert format_params(parse_budget("2000M")) == "2G"
