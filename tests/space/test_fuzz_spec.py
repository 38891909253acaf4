"""The spec loader on hand-edited JSON: it loads, or raises SpecError; never anything else."""

from __future__ import annotations

import json
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from budgetnas.space.spec import ArchSpec, SpecError
from budgetnas.space.zoo import ZOO
from tests.helpers import random_spec

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-10, 5000)
    | st.floats(allow_nan=True)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)

BASES = [e.spec.to_dict() for e in ZOO.values()] + [
    random_spec(random.Random(i)).to_dict() for i in range(20)
]


def _load(data) -> None:
    """Loads (and then round-trips exactly) or raises SpecError; any other error fails."""
    try:
        spec = ArchSpec.from_dict(data) if not isinstance(data, str) else ArchSpec.from_json(data)
    except SpecError:
        return
    assert ArchSpec.from_json(spec.to_json()) == spec


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*prefix, i))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(base=st.sampled_from(BASES), data=st.data(), value=json_values, delete=st.booleans())
def test_edited_spec_loads_or_raises_spec_error(base, data, value, delete):
    spec = json.loads(json.dumps(base))
    paths = list(_paths(spec))[1:]
    path = data.draw(st.sampled_from(paths))
    parent = spec
    for step in path[:-1]:
        parent = parent[step]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    _load(spec)


@settings(max_examples=200, deadline=None)
@given(value=json_values)
def test_arbitrary_json_loads_or_raises_spec_error(value):
    _load(value)
    _load(json.dumps(value))


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=40))
def test_arbitrary_text_raises_spec_error(text):
    _load(text)
