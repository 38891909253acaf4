"""The tables ``budgetnas count`` and ``budgetnas zoo`` print: exact costs per block of a spec,
and the seed networks with their counts and claims."""

from __future__ import annotations

from budgetnas.space.count import analyze
from budgetnas.space.memory import FLOAT32, INT8, activation_memory
from budgetnas.space.spec import ArchSpec
from budgetnas.space.zoo import ZOO


def _kb(n: int) -> str:
    return f"{n / 1024:.1f} KB"


def count_lines(spec: ArchSpec) -> list[str]:
    """Per block: its output shape, parameters, MACs, receptive field and peak activation
    (float32 and int8); then the totals."""
    stats, memory = analyze(spec), activation_memory(spec)
    lines = [
        f"{'#':>3}  {'block':<34} {'out (C,H,W)':>14} {'params':>8} {'MACs':>11} {'RF':>3} "
        f"{'act f32':>9} {'act int8':>9}"
    ]
    for layer, peak in zip(stats.layers, memory.blocks, strict=True):
        idx = str(layer.index) if layer.index else "head"
        shape = ",".join(map(str, layer.out_shape))
        lines.append(
            f"{idx:>3}  {layer.name[:34]:<34} {shape:>14} {layer.params:>8,} {layer.macs:>11,} "
            f"{layer.receptive_field:>3} {_kb(4 * peak):>9} "
            f"{_kb(peak):>9}"
        )
    lines.append(
        f"total: {stats.params:,} parameters, {stats.macs:,} MACs, receptive field "
        f"{stats.receptive_field}, peak activation {memory.bytes(FLOAT32):,} bytes float32 / "
        f"{memory.bytes(INT8):,} bytes int8 (plain layer-by-layer order)"
    )
    return lines


def zoo_lines() -> list[str]:
    """Every seed network: exact and published parameters, MACs, receptive field, peak
    activation, the accuracy its write-up claims and how."""
    lines = [
        f"{'key':<4} {'params':>7} {'published':>9} {'MACs':>10} {'RF':>3} {'act f32':>9} "
        f"{'act int8':>9} {'claimed':>8}  title"
    ]
    for e in ZOO.values():
        a, peak = analyze(e.spec), activation_memory(e.spec).peak
        published = f"{e.published_params:,}" if e.published_params else "-"
        lines.append(
            f"{e.key:<4} {a.params:>7,} {published:>9} {a.macs:>10,} {a.receptive_field:>3} "
            f"{_kb(4 * peak):>9} {_kb(peak):>9} {e.claimed_accuracy:>8.2%}  {e.title} ({e.claim})"
        )
    return lines
