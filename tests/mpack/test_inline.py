"""The inline answer a legacy client gets: the stored pack re-headed, plus fresh branch_heads."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import msgpack
import pytest

from musehub.mpack.errors import MPackFormatError
from musehub.mpack.inline import (
    INLINE_HEADER,
    STORED_HEADER,
    ainline_answer,
    branch_heads_trailer,
    inline_answer,
)
from tests.mpack.helpers import VECTOR_HEADS, VECTOR_PATH, load_vector, small_repo, write_pack


def _stored_vector_pack() -> bytes:
    vector = load_vector()
    raw, _ = write_pack(vector["commits"], vector["snapshots"], vector["objects"])
    return raw


def _decode_as_the_client_does(raw: bytes) -> dict[str, object]:
    answer = msgpack.unpackb(raw, raw=False)
    assert isinstance(answer, dict)
    return answer


def test_stored_pack_starts_with_a_fixmap3() -> None:
    assert _stored_vector_pack()[:1] == STORED_HEADER == b"\x83"


def test_inline_answer_decodes_as_a_legacy_client_reads_it() -> None:
    stored = _stored_vector_pack()
    inline = INLINE_HEADER + stored[1:] + branch_heads_trailer(VECTOR_HEADS)
    answer = _decode_as_the_client_does(inline)
    vector = load_vector()
    assert list(answer) == ["commits", "snapshots", "objects", "branch_heads"]
    assert answer["commits"] == vector["commits"]
    assert answer["snapshots"] == vector["snapshots"]
    assert answer["branch_heads"] == VECTOR_HEADS
    objects = answer["objects"]
    assert isinstance(objects, list) and len(objects) == 7
    for obj in objects:
        assert isinstance(obj["content"], bytes)
        assert hashlib.sha256(obj["content"]).hexdigest() == obj["object_id"]


def test_trailer_is_sorted_so_it_is_deterministic() -> None:
    assert branch_heads_trailer({"b": "2", "a": "1"}) == branch_heads_trailer({"a": "1", "b": "2"})


@pytest.mark.parametrize("chunk_size", [1, 7, 4096, 10**9])
def test_inline_answer_chunks_equal_the_formula(chunk_size: int) -> None:
    stored, _ = write_pack(*small_repo())
    chunks = [b""] + [stored[i : i + chunk_size] for i in range(0, len(stored), chunk_size)]
    heads = {"main": "a" * 64}
    expected = INLINE_HEADER + stored[1:] + branch_heads_trailer(heads)
    assert b"".join(inline_answer(chunks, heads)) == expected


async def test_async_inline_answer_equals_the_sync_one() -> None:
    stored, _ = write_pack(*small_repo())

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(stored), 1000):
            yield stored[i : i + 1000]

    heads = {"main": "a" * 64}
    parts = [part async for part in ainline_answer(chunks(), heads)]
    assert b"".join(parts) == b"".join(inline_answer([stored], heads))
    answer = _decode_as_the_client_does(b"".join(parts))
    assert answer["branch_heads"] == heads


@pytest.mark.parametrize(
    ("stored", "message"),
    [([], "the stored pack is empty"), ([b"", b"\x84"], "starts with byte 84, not 83")],
)
def test_a_pack_not_written_by_the_writer_is_refused(stored: list[bytes], message: str) -> None:
    with pytest.raises(MPackFormatError, match=message):
        list(inline_answer(stored, {}))


def test_inline_answer_of_the_vector_is_byte_identical_to_the_clients_bundle() -> None:
    inline = b"".join(inline_answer([_stored_vector_pack()], VECTOR_HEADS))
    assert inline == VECTOR_PATH.read_bytes()
