"""Canonical JSON: orjson's fast path must give exactly the json module's bytes."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import canonical
from core.errors import Malformed

TEXT = st.text(st.characters(blacklist_categories=("Cs",)))
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=25,
)


def reference(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@settings(max_examples=2000, deadline=None)
@given(VALUES)
def test_dumps_is_sorted_compact_utf8_json(value: object) -> None:
    assert canonical.dumps(value) == reference(value)
    assert canonical.dumps(value, checked=False) == reference(value)
    assert canonical.loads(canonical.dumps(value)) == value


@settings(max_examples=500, deadline=None)
@given(st.none() | st.booleans() | st.integers() | TEXT)
def test_scalar_bytes_matches_dumps(value: object) -> None:
    assert canonical.scalar_bytes(value) == reference(value)


def test_integers_beyond_64_bits_still_encode() -> None:
    assert canonical.dumps({"n": 2**70}) == b'{"n":1180591620717411303424}'


@pytest.mark.parametrize("value", [1.5, {"a": [0.0]}, float("nan")])
def test_floats_are_refused(value: object) -> None:
    with pytest.raises(Malformed):
        canonical.dumps(value)
