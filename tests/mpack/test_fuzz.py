"""Hostile bytes: the reader and the request decoder only ever raise MPackFormatError."""

from __future__ import annotations

import io
from typing import Any

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from musehub.mpack.errors import MPackFormatError
from musehub.mpack.limits import DEFAULT_LIMITS, MPackLimits
from musehub.mpack.reader import read_mpack
from musehub.mpack.records import RecordError, validate_commit, validate_object, validate_snapshot
from musehub.mpack.request import decode_request
from tests.mpack.helpers import VECTOR_PATH, load_vector, small_repo, write_pack

VECTOR = VECTOR_PATH.read_bytes()
STORED, _ = write_pack(*small_repo())
TIGHT = MPackLimits(
    max_buffer_size=4096, max_bin_len=2048, max_str_len=256, max_array_len=64, max_map_len=64
)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# msgpack-ish prefixes make random tails reach deeper than pure noise would.
_prefixes = st.sampled_from([b"", b"\x84", b"\x81\xa7commits", b"\x81\xa7objects\x91", VECTOR[:40]])
hostile_bytes = st.one_of(
    st.binary(max_size=512),
    st.builds(lambda p, tail: p + tail, _prefixes, st.binary(max_size=256)),
)
msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.text(max_size=10) | st.binary(max_size=5), children, max_size=5)
    ),
    max_leaves=30,
)


def _read_all(raw: bytes, limits: MPackLimits = DEFAULT_LIMITS) -> None:
    try:
        read_mpack(io.BytesIO(raw), limits=limits)
    except MPackFormatError as exc:
        assert "\n" not in str(exc)


def _decode(raw: bytes, limits: MPackLimits = DEFAULT_LIMITS) -> Any:
    try:
        return decode_request(raw, limits=limits)
    except MPackFormatError as exc:
        assert "\n" not in str(exc)
        return exc


@FUZZ
@given(hostile_bytes)
def test_arbitrary_bytes_into_the_reader(raw: bytes) -> None:
    _read_all(raw)
    _read_all(raw, TIGHT)


@FUZZ
@given(hostile_bytes)
def test_arbitrary_bytes_into_decode_request(raw: bytes) -> None:
    _decode(raw)
    _decode(raw, TIGHT)


@FUZZ
@given(msgpack_values)
def test_any_msgpack_value_decodes_or_is_refused_cleanly(value: Any) -> None:
    raw = msgpack.packb(value, use_bin_type=True)
    result = _decode(raw)
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        assert result == value
    else:
        assert isinstance(result, MPackFormatError)
    _read_all(raw)


@FUZZ
@given(st.data())
def test_mutated_vector_bytes(data: st.DataObject) -> None:
    raw = bytearray(VECTOR)
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    _read_all(bytes(raw))
    _read_all(bytes(raw), TIGHT)
    _decode(bytes(raw))


def test_every_truncation_of_a_valid_pack_is_refused() -> None:
    for pack in (VECTOR, STORED):
        read_mpack(io.BytesIO(pack))
        for length in range(len(pack)):
            try:
                read_mpack(io.BytesIO(pack[:length]))
            except MPackFormatError:
                continue
            raise AssertionError(f"a pack cut to {length} of {len(pack)} bytes was accepted")


def test_every_truncation_of_a_valid_request_is_refused() -> None:
    for length in range(len(VECTOR)):
        assert isinstance(_decode(VECTOR[:length]), MPackFormatError)


@FUZZ
@given(msgpack_values, st.sampled_from(["commit_id", "snapshot_id", "message", "metadata"]))
def test_record_validation_only_raises_record_error(value: Any, field: str) -> None:
    commit = load_vector()["commits"][0] | {field: value}
    snapshot = load_vector()["snapshots"][0] | {"manifest": value}
    for validate, record in (
        (validate_commit, value),
        (validate_commit, commit),
        (validate_snapshot, value),
        (validate_snapshot, snapshot),
        (validate_object, value),
    ):
        try:
            validate(record)
        except RecordError as exc:
            assert "\n" not in str(exc)
