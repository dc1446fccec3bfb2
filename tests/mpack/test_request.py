"""Request bodies: a map with string keys, or one clear MPackFormatError."""

from __future__ import annotations

import msgpack
import pytest

from musehub.mpack.errors import MPackFormatError
from musehub.mpack.limits import MPackLimits
from musehub.mpack.request import decode_request


def test_decodes_a_fetch_request() -> None:
    body = msgpack.packb({"want": ["a" * 64] * 3, "have": [], "capabilities": ["mpack-url"]})
    assert decode_request(body) == {
        "want": ["a" * 64] * 3,
        "have": [],
        "capabilities": ["mpack-url"],
    }


def test_bin_stays_bytes_and_large_have_lists_are_fine() -> None:
    body = msgpack.packb(
        {"objects": [{"object_id": "x", "content": b"\x00\xff"}], "have": ["b" * 64] * 50_000},
        use_bin_type=True,
    )
    decoded = decode_request(body)
    assert decoded["objects"][0]["content"] == b"\x00\xff"
    assert len(decoded["have"]) == 50_000


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "request body is empty"),
        (b"\xc1", "not valid msgpack: the bytes are not msgpack"),
        (b"\x82\xa1a", "not valid msgpack: the data ends in the middle of a value"),
        (msgpack.packb({"a": 1}) + b"\x01", "there is trailing data after the top-level map"),
        (msgpack.packb([1, 2]), "request body must be a msgpack map, got list"),
        (msgpack.packb("text"), "request body must be a msgpack map, got str"),
        (msgpack.packb({b"k": 1}, use_bin_type=True), "map keys must be strings"),
        (msgpack.packb({1: 1}), "a map key is not a string"),
        (b"\x81\xa1a\xa2\xff\xfe", "a string is not valid UTF-8"),
        (b"\x91" * 5000, "values are nested too deeply"),
        (b"\x81\xa1a\xdd\xff\xff\xff\xff", "over a size limit"),
        (b"\xd6\xff\xff\xff\xff\xff", "request body must be a msgpack map, got Timestamp"),
    ],
)
def test_bad_bodies_raise_one_clear_error(body: bytes, message: str) -> None:
    with pytest.raises(MPackFormatError) as info:
        decode_request(body)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_limits_apply() -> None:
    body = msgpack.packb({"have": ["a" * 64] * 10})
    with pytest.raises(MPackFormatError, match="exceeds max_array_len"):
        decode_request(body, limits=MPackLimits(max_array_len=5))
    with pytest.raises(MPackFormatError, match=f"request body is {len(body)} bytes, over"):
        decode_request(body, limits=MPackLimits(max_buffer_size=100))
