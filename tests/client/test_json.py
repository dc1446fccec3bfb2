"""A clone's JSON files are byte for byte what the muse client writes:
``json.dumps(record, indent=2)`` and a newline, whichever encoder made them."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from musehub.client.layout import encode_json

_leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()  # every code point: non-ASCII, DEL, controls, lone surrogates, astral
)
_values = st.recursive(
    _leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.text(), _values, max_size=6))
@example({"lone surrogate": "\ud800x", "astral": "\U0001f3b5", "del": "\x7f", "float": 1e16})
def test_same_bytes_as_json_dumps(record: dict[str, Any]) -> None:
    assert encode_json(record) == (json.dumps(record, indent=2) + "\n").encode("ascii")


def test_a_manifest_with_non_ascii_paths() -> None:
    record = {"snapshot_id": "a" * 64, "manifest": {"chœur/🎵.mid": "b" * 64, "x\x7f": "c" * 64}}
    assert encode_json(record) == (json.dumps(record, indent=2) + "\n").encode("ascii")
