"""Serving a stored pack inline to a legacy client, with no decode and no re-encode.

A stored pack is a 3-entry map (commits, snapshots, objects) and so starts with the fixmap-3
byte 0x83. The inline `/fetch` answer is the same bytes with that byte turned into fixmap-4,
followed by one more entry, `branch_heads`, computed fresh when served:

    inline = INLINE_HEADER + stored[1:] + branch_heads_trailer(heads)

Its length is `stored_size + len(branch_heads_trailer(heads))`.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping

import msgpack

from musehub.mpack.errors import MPackFormatError

STORED_HEADER = b"\x83"
INLINE_HEADER = b"\x84"


def branch_heads_trailer(heads: Mapping[str, str]) -> bytes:
    """The `branch_heads` key and map that end an inline answer (branches sorted by name)."""
    return msgpack.packb("branch_heads") + msgpack.packb(dict(sorted(heads.items())))


def inline_answer(stored: Iterable[bytes], heads: Mapping[str, str]) -> Iterator[bytes]:
    """Turn the chunks of a stored pack into the chunks of the inline `/fetch` answer."""
    first = True
    for chunk in stored:
        if first and chunk:
            chunk, first = _swap_header(chunk), False
        yield chunk
    if first:
        raise MPackFormatError("the stored pack is empty")
    yield branch_heads_trailer(heads)


async def ainline_answer(
    stored: AsyncIterable[bytes], heads: Mapping[str, str]
) -> AsyncIterator[bytes]:
    """`inline_answer` for chunks streamed from async storage."""
    first = True
    async for chunk in stored:
        if first and chunk:
            chunk, first = _swap_header(chunk), False
        yield chunk
    if first:
        raise MPackFormatError("the stored pack is empty")
    yield branch_heads_trailer(heads)


def _swap_header(chunk: bytes) -> bytes:
    if chunk[:1] != STORED_HEADER:
        raise MPackFormatError(
            f"the stored pack starts with byte {chunk[:1].hex()}, not 83 (a 3-entry map); "
            "it was not written by MPackWriter"
        )
    return INLINE_HEADER + chunk[1:]
