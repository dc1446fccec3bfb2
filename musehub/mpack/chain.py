"""Packs joined into one by byte ranges, without decoding: a chain of parts served as one pack.

A pack is a 3-entry map, `commits`, `snapshots` and `objects`, each an array of records. The
parts of a chain hold the records of successive pieces of one history, so the pack they make
together is

    fixmap-3  "commits" array(sum of counts)  <each part's commit records, in chain order>
              "snapshots" array(sum)          <each part's snapshot records>
              "objects" array(sum)            <each part's objects>

It is streamed from the parts' stored bytes with one ranged read per part and section; its
length and every header are known from the parts' section spans (recorded when each part was
written) before a byte is read. A chain of one part joins to exactly that part's bytes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

import msgpack

from musehub.mpack.errors import MPackFormatError
from musehub.mpack.inline import STORED_HEADER
from musehub.mpack.writer import SECTIONS, SectionSpan

# (storage key, start, end) -> the bytes [start, end) of that object, in chunks.
RangeReader = Callable[[str, int, int], AsyncIterator[bytes]]


@dataclass(frozen=True)
class StoredPart:
    """One stored pack of a chain: its storage key and where its three sections lie."""

    key: str
    sections: tuple[SectionSpan, ...]

    def __post_init__(self) -> None:
        if len(self.sections) != len(SECTIONS):
            raise MPackFormatError(
                f"part {self.key} has {len(self.sections)} section spans, not {len(SECTIONS)}"
            )


def joined_headers(parts: Sequence[StoredPart]) -> list[bytes]:
    """Each section's name and array header in the joined pack."""
    packer = msgpack.Packer(use_bin_type=True)
    return [
        packer.pack(name) + packer.pack_array_header(sum(p.sections[i].count for p in parts))
        for i, name in enumerate(SECTIONS)
    ]


def joined_size(parts: Sequence[StoredPart], map_header: bytes = STORED_HEADER) -> int:
    records = sum(span.end - span.start for part in parts for span in part.sections)
    return len(map_header) + sum(len(h) for h in joined_headers(parts)) + records


def joined_sections(parts: Sequence[StoredPart]) -> tuple[SectionSpan, ...]:
    """The section spans of the joined pack itself (so it can be a part of later chains)."""
    spans, at = [], len(STORED_HEADER)
    for i, header in enumerate(joined_headers(parts)):
        start = at + len(header)
        at = start + sum(p.sections[i].end - p.sections[i].start for p in parts)
        spans.append(SectionSpan(sum(p.sections[i].count for p in parts), start, at))
    return tuple(spans)


async def joined_stream(
    parts: Sequence[StoredPart], read_range: RangeReader, map_header: bytes = STORED_HEADER
) -> AsyncIterator[bytes]:
    """The joined pack's bytes. `map_header` is the stored pack's fixmap-3, or fixmap-4 for an
    inline answer that appends `branch_heads` after it."""
    if not parts:
        raise MPackFormatError("a chain needs at least one part")
    yield map_header
    for i, header in enumerate(joined_headers(parts)):
        yield header
        for part in parts:
            span = part.sections[i]
            if span.end > span.start:
                async for chunk in read_range(part.key, span.start, span.end):
                    yield chunk
