"""Architecture specs: validation, exact counting, building, rendering, the seed zoo."""

from budgetnas.space.blocks import Block, Layer, register_block
from budgetnas.space.build import build, plan
from budgetnas.space.choices import SpaceConfig
from budgetnas.space.count import (
    Analysis,
    LayerStats,
    analyze,
    count_macs,
    count_params,
    receptive_field,
)
from budgetnas.space.render import render
from budgetnas.space.sample import Rejected, sample_spec, smallest_network
from budgetnas.space.spec import (
    BLOCK_KINDS,
    ArchSpec,
    Conv,
    Head,
    Pool,
    Residual,
    SpecError,
    Transition,
)
from budgetnas.space.zoo import ZOO, ZooEntry

__all__ = [
    "BLOCK_KINDS",
    "ZOO",
    "Analysis",
    "ArchSpec",
    "Block",
    "Conv",
    "Head",
    "Layer",
    "LayerStats",
    "Pool",
    "Rejected",
    "Residual",
    "SpaceConfig",
    "SpecError",
    "Transition",
    "ZooEntry",
    "analyze",
    "build",
    "count_macs",
    "count_params",
    "plan",
    "receptive_field",
    "register_block",
    "render",
    "sample_spec",
    "smallest_network",
]
