"""gateway.json_body: request bodies the rest of Flowline can hold, or a problem (issue 10.8)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.json_body import MAX_JSON_DEPTH, loads
from gateway.problems import Problem


@pytest.mark.parametrize(("raw", "status"), [
    (b"[" * 100_000 + b"]" * 100_000, 400),                      # RecursionError in json.loads
    (b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1), 400),
    (b'{"a": ' * (MAX_JSON_DEPTH + 1) + b"1" + b"}" * (MAX_JSON_DEPTH + 1), 400),
    (b'{"amount": NaN}', 422), (b'{"amount": Infinity}', 422), (b'{"amount": -Infinity}', 422),
    (b'{"amount": 1e400}', 422), (b'{"memo": "a\\u0000b"}', 422), (b'{"a\\u0000": 1}', 422),
    (b'{"memo": "\\ud800"}', 422), (b"{not json", 400), (b"\xff\xfe", 400),
])
def test_bodies_that_cannot_be_processed_are_problems(raw, status):
    with pytest.raises(Problem) as info:
        loads(raw)
    assert info.value.status == status


def test_the_depth_limit_itself_is_accepted():
    raw = b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH
    assert loads(raw) is not None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=8), children,
        max_size=4),
    max_leaves=30)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_ordinary_json_round_trips(value):
    assert loads(json.dumps(value).encode()) == value
