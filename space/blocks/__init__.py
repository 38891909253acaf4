"""Block kinds: each one says its own shape, cost, receptive field and layers.

A block kind is one frozen dataclass implementing ``Block`` and one ``@register_block`` line,
in the module of its family (as timm keeps a file per model family): ``basic`` (conv, pool,
transition), ``residual``, ``mobile`` (depthwise-separable, inverted residual,
squeeze-excitation, strided conv). Everything else reads a block only through the protocol in
``base``: ``ArchSpec`` validation walks ``check_input`` / ``out_size`` / ``out_channels``,
``space.count`` sums ``cost`` and ``receptive``, ``space.build`` and ``space.render``
instantiate or print ``layers``, and the JSON loader dispatches on ``kind``. The parametrized
tests run over ``BLOCK_KINDS`` and each kind's ``examples()``, so a new kind is counted,
built, rendered and round-tripped by the existing tests without touching them.

Nothing here imports torch: a ``Layer`` is a record naming a ``torch.nn`` class and its
arguments.
"""

# isort: skip_file
from budgetnas.space.blocks.base import (
    BLOCK_KINDS,
    BODY_KINDS,
    DROPOUT_KINDS,
    DROPOUT_LAYERS,
    ORDERS,
    Block,
    Layer,
    act_layers,
    block_from_dict,
    conv_out_size,
    field_names,
    plain,
    pool_out_size,
    register_block,
)

# the families, in the order their kinds register
from budgetnas.space.blocks.basic import Conv, Pool, Transition
from budgetnas.space.blocks.residual import Residual
from budgetnas.space.blocks.mobile import MBConv, SepConv, SqueezeExcite, StridedConv

__all__ = [
    "BLOCK_KINDS",
    "BODY_KINDS",
    "DROPOUT_KINDS",
    "DROPOUT_LAYERS",
    "ORDERS",
    "Block",
    "Conv",
    "Layer",
    "MBConv",
    "Pool",
    "Residual",
    "SepConv",
    "SqueezeExcite",
    "StridedConv",
    "Transition",
    "act_layers",
    "block_from_dict",
    "conv_out_size",
    "field_names",
    "plain",
    "pool_out_size",
    "register_block",
]
