"""The hand-made seed networks the search has to beat, as specs.

Each entry is read off a published write-up; ``published_params`` is the count the write-up
states, and ``tests/space/test_zoo.py`` checks that the spec reproduces it exactly.
``register`` adds an entry; the tests are parametrized over ``ZOO``. An entry's identity is
its spec: one that changes keeps its key, and a run tells it from the network it trained by
the spec stored on its reference trials and verify records (``search.config.same_network``),
never mixing the two under one name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from budgetnas.space.spec import ArchSpec, Conv, Head, Pool, Residual, Transition


@dataclass(frozen=True)
class ZooEntry:
    key: str
    title: str
    spec: ArchSpec
    published_params: int | None  # None where the write-up gives no exact count
    claimed_accuracy: float  # test accuracy the write-up claims, in [0, 1]
    claim: str  # what the claim is: epochs, and how it was picked
    reading: str = ""  # how an incomplete write-up was read


ZOO: dict[str, ZooEntry] = {}


def register(fn: Callable[[], ZooEntry]) -> Callable[[], ZooEntry]:
    entry = fn()
    if entry.key in ZOO:
        raise ValueError(f"zoo key {entry.key} registered twice")
    ZOO[entry.key] = entry
    return fn


@register
def seed_000() -> ZooEntry:
    def conv(out: int, pad: int = 0) -> Conv:
        return Conv(out, pad=pad, order="act_bn", dropout=0.09, dropout_kind="channel")

    return ZooEntry(
        key="000",
        title="12.4K, GAP, one max-pool",
        spec=ArchSpec(
            blocks=(
                conv(16),
                conv(32),
                Transition(8, pool_first=False),
                conv(16),
                conv(16),
                conv(16, pad=1),
            ),
            head=Head(kind="conv_gap", k=3, bias=False),
        ),
        published_params=12_400,
        claimed_accuracy=0.9940,
        claim="20 epochs, SGD lr 0.01, best test epoch",
    )


@register
def seed_001() -> ZooEntry:
    def conv(out: int) -> Conv:
        return Conv(out, pad=1, bias=True, order="act_bn", dropout=0.05)

    def trans(out: int) -> Transition:
        return Transition(out, pool_first=True, bias=True)

    return ZooEntry(
        key="001",
        title="9.8K, three blocks, two transitions",
        spec=ArchSpec(
            blocks=(
                conv(10),
                conv(16),
                trans(10),
                conv(16),
                conv(16),
                trans(10),
                conv(16),
                conv(16),
            ),
            head=Head(kind="conv_gap", k=1, bias=True),
        ),
        published_params=9_798,
        claimed_accuracy=0.9938,
        claim="19 epochs, SGD + OneCycle, best test epoch (16)",
    )


@register
def seed_002() -> ZooEntry:
    return ZooEntry(
        key="002",
        title="8.5K, residual, one-epoch target",
        spec=ArchSpec(
            blocks=(
                Conv(16, pad=1, bias=True, dropout=0.03),
                Conv(24, pad=1, bias=True, dropout=0.03),
                Pool(),
                Residual(
                    body=(
                        Conv(16, k=1, bias=True),
                        Conv(24, pad=1, bias=True, dropout=0.03),
                    ),
                    proj=True,
                    bias=True,
                ),
                Pool(),
            ),
            head=Head(kind="conv_gap", k=1, bias=True),
        ),
        published_params=8_530,
        claimed_accuracy=0.95,
        claim="1 epoch, SGD lr 0.1 + OneCycle, batch 32",
    )


@register
def seed_003() -> ZooEntry:
    def conv(out: int) -> Conv:
        return Conv(out, pad=1, bias=True, act="gelu", dropout=0.15)

    return ZooEntry(
        key="003",
        title="~24K, 7 GELU convs, FC head",
        spec=ArchSpec(
            blocks=(
                conv(4),
                conv(8),
                conv(12),
                conv(16),
                Pool(),
                conv(20),
                Pool(),
                conv(24),
                Pool(ceil=True),
                conv(28),
                Pool(),
            ),
            head=Head(kind="fc", pool_to=2, hidden=(56,), act="gelu"),
        ),
        published_params=None,
        claimed_accuracy=0.95,
        claim="1 epoch, SGD + OneCycle, batch 4",
        reading=(
            "The write-up lists seven 3x3 convs (1->4->8->12->16->20->24->28) with BatchNorm "
            "and GELU, spatial 28->14->7->4->2 and a 28->56->10 head, but no exact count. Read "
            "here as: padded convs with bias, a 2x2 max-pool after conv 4, 5, 6 (ceil, 7->4) "
            "and 7, then the 2x2x28 map flattened into FC 112->56->10: 23,398 parameters, the "
            "reading closest to the stated ~24,000 (a GAP before the FC would give 18,694)."
        ),
    )


@register
def seed_004() -> ZooEntry:
    return ZooEntry(
        key="004",
        title="17K, FC head",
        spec=ArchSpec(
            blocks=(
                Conv(12, pad=1, bias=True, dropout=0.1),
                Pool(),
                Conv(24, pad=1, bias=True, dropout=0.1),
                Pool(),
                Conv(24, pad=1, bias=True, dropout=0.1),
                Conv(12, k=1, bias=True),
            ),
            head=Head(kind="fc", pool_to=3, hidden=(72,), dropout=0.4),
        ),
        published_params=16_966,
        claimed_accuracy=0.9942,
        claim="up to 20 epochs, SGD Nesterov, final test accuracy",
    )
