from __future__ import annotations

import json
import random
from dataclasses import replace

import pytest

from budgetnas.space.blocks import BLOCK_KINDS, Conv, Pool, Residual, Transition
from budgetnas.space.count import count_params
from budgetnas.space.spec import ArchSpec, Head, SpecError
from budgetnas.space.zoo import ZOO
from tests.helpers import random_spec


def test_shrinking_map_names_the_block():
    blocks = tuple(Conv(8) for _ in range(14))  # 28 -> 26 -> ... -> 2 -> 0
    with pytest.raises(SpecError, match=r"feature map shrinks to 0x0 after block 14 \(conv 3x3"):
        ArchSpec(blocks=blocks)


def test_pool_past_one_pixel_is_refused():
    with pytest.raises(SpecError, match="after block 6"):
        ArchSpec(blocks=(Conv(4),) + (Pool(),) * 5)  # 26 -> 13 -> 6 -> 3 -> 1 -> 0


def test_head_kernel_must_fit():
    with pytest.raises(SpecError, match="head conv 3x3 does not fit the 1x1"):
        ArchSpec(blocks=(Conv(4), Pool(), Pool(), Pool(), Pool()), head=Head(kind="conv_gap", k=3))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Conv(0), "out must be between 1"),
        (lambda: Conv(8, k=2), "kernel size must be odd"),
        (lambda: Conv(8, k=3, pad=2), "pad must be between 0 and 1"),
        (lambda: Conv(8, act="tanh"), "act must be one of"),
        (lambda: Conv(8, dropout=1.0), "dropout must be a number in"),
        (lambda: Conv(True), "out must be an integer"),
        (lambda: Transition(8, bias="yes"), "bias must be true or false"),
        (lambda: Residual(()), "non-empty"),
        (lambda: Residual((Conv(8, pad=0),)), "must use pad 1"),
        (lambda: Head(kind="conv_gap", hidden=(8,)), "no hidden layers"),
        (lambda: Head(kind="mlp"), "kind must be one of"),
    ],
)
def test_invalid_blocks_raise_spec_error(make, message):
    with pytest.raises(SpecError, match=message):
        make()


def test_identity_shortcut_needs_matching_channels():
    with pytest.raises(SpecError, match="identity shortcut needs 8 output channels"):
        ArchSpec(blocks=(Conv(8, pad=1), Residual((Conv(12, pad=1),), proj=False)))


@pytest.mark.parametrize("key", sorted(ZOO))
def test_zoo_json_round_trip(key):
    spec = ZOO[key].spec
    assert ArchSpec.from_json(spec.to_json()) == spec
    assert hash(ArchSpec.from_json(spec.to_json())) == hash(spec)


def test_random_specs_round_trip_and_cover_every_block_kind():
    rng = random.Random(7)
    kinds = set()
    for _ in range(200):
        spec = random_spec(rng)
        again = ArchSpec.from_json(spec.to_json())
        assert again == spec
        assert again.to_json() == spec.to_json()
        kinds |= {b.kind for b in spec.blocks}
    assert kinds == set(BLOCK_KINDS)


@pytest.mark.parametrize(
    "text, message",
    [
        ("not json", "not valid JSON"),
        ("[]", "must be a JSON object"),
        ("{}", "missing field"),
        ('{"blocks": [], "color": 1}', "unknown field"),
        ('{"blocks": [{"kind": "lstm"}]}', "unknown block kind"),
        ('{"blocks": [{"kind": "conv"}]}', "missing field"),
        ('{"blocks": [{"kind": "conv", "out": "8"}]}', "must be an integer"),
        ('{"blocks": [{"kind": "conv", "out": 8, "k": 9}]}', "between 1 and 7"),
        ('{"blocks": [], "head": {"hidden": 5}}', "hidden must be a list"),
        ('{"blocks": [], "norm": [0.1, 0]}', "std > 0"),
        ('{"blocks": [{"kind": "residual", "body": {}}]}', "body must be a list"),
    ],
)
def test_from_json_rejects_malformed_specs(text, message):
    with pytest.raises(SpecError, match=message):
        ArchSpec.from_json(text)


def test_to_dict_is_canonical_json():
    spec = ZOO["002"].spec
    d = json.loads(spec.to_json())
    assert d["blocks"][3]["kind"] == "residual"
    assert [b["kind"] for b in d["blocks"][3]["body"]] == ["conv", "conv"]
    assert spec.summary().count("|") == len(spec.blocks)


# A spec as stored before a conv said which dropout it has (written by that version).
STORED_BEFORE_DROPOUT_KINDS = (
    '{"blocks": [{"act": "relu", "bias": false, "bn": true, "dropout": 0.1, "k": 3, '
    '"kind": "conv", "order": "bn_act", "out": 8, "pad": 1}], "head": {"act": "relu", '
    '"bias": true, "dropout": 0.0, "hidden": [], "k": 1, "kind": "fc", "pad": 0, '
    '"pool_to": 1}, "in_channels": 1, "input_size": 28, "norm": [0.1307, 0.3081], '
    '"num_classes": 10}'
)


def test_a_spec_stored_before_dropout_kinds_loads_with_element_dropout():
    """Its JSON reads back unchanged (so stored results keep their keys); a channel-dropout
    conv says so and round-trips; an unknown kind is one line."""
    spec = ArchSpec.from_json(STORED_BEFORE_DROPOUT_KINDS)
    assert spec.blocks[0].dropout_kind == "element"
    assert spec.to_json() == STORED_BEFORE_DROPOUT_KINDS
    assert [layer.op for layer in spec.blocks[0].layers(1)][-1] == "Dropout"
    channel = replace(spec, blocks=(replace(spec.blocks[0], dropout_kind="channel"),))
    assert json.loads(channel.to_json())["blocks"][0]["dropout_kind"] == "channel"
    assert ArchSpec.from_json(channel.to_json()) == channel != spec
    assert [layer.op for layer in channel.blocks[0].layers(1)][-1] == "Dropout2d"
    assert count_params(channel) == count_params(spec)
    spatial = STORED_BEFORE_DROPOUT_KINDS.replace('"k": 3', '"dropout_kind": "spatial", "k": 3')
    with pytest.raises(SpecError, match="dropout_kind must be one of element, channel"):
        ArchSpec.from_json(spatial)
