"""Streaming writer of a muse pack, hashing the bytes as they go out.

Layout: a 3-entry map `commits`, `snapshots`, `objects` (in that order), each an array;
an object is the map `{object_id, content}` with content as bin. Deterministic: the same
records in the same order give the same bytes, so the sha256 can name the pack.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

import msgpack

from musehub.mpack.sink import PackSink

SECTIONS: tuple[str, ...] = ("commits", "snapshots", "objects")


class MPackWriteError(RuntimeError):
    """The writer was used out of order or wrote a different count than it declared (a bug)."""


@dataclass(frozen=True, slots=True)
class SectionSpan:
    """Where one section's records lie in a pack: `count` records in bytes `[start, end)`,
    after the section's name and array header. Packs are joined by these spans, unread."""

    count: int
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class PackDigest:
    size: int
    sha256: str
    # commits, snapshots, objects; empty when not known (a pack described by size and hash only)
    sections: tuple[SectionSpan, ...] = ()


class MPackWriter:
    """Write a pack to `out` (or through `sink`) section by section; `finish()` returns its size
    and sha256. A writer given a ThreadedPackSink must be finished or aborted."""

    def __init__(self, out: BinaryIO, *, sink: PackSink | None = None) -> None:
        self._sink = sink or PackSink(out)
        self._packer = msgpack.Packer(use_bin_type=True)
        self._section = -1
        self._declared = 0
        self._written = 0
        self._content_left = 0
        self._finished = False
        self._spans: list[SectionSpan] = []
        self._led: str | None = None  # the next section's name, written ahead of its count
        self._emit(self._packer.pack_map_header(len(SECTIONS)))

    def lead(self, name: str) -> None:
        """Write the next section's name before its count is known, and hand everything written
        so far to the file: a reader of the growing file sees the pack begin while the caller
        works out what the section holds. `begin_section(name, count)` follows."""
        self._check_section_done()
        expected = SECTIONS[self._section + 1] if self._section + 1 < len(SECTIONS) else None
        if name != expected or self._led is not None:
            raise MPackWriteError(f"cannot lead with section {name!r} here")
        self._emit(self._packer.pack(name))
        self._led = name
        self._sink.flush()

    def flush(self) -> None:
        """Hand everything written so far to the file (a reader of the growing file waits)."""
        self._sink.flush()

    def begin_section(self, name: str, count: int) -> None:
        """Start the next section (commits, snapshots, objects in turn) of `count` records."""
        self._check_section_done()
        expected = SECTIONS[self._section + 1] if self._section + 1 < len(SECTIONS) else None
        if name != expected:
            raise MPackWriteError(f"section {name!r} out of order: expected {expected!r}")
        if count < 0:
            raise MPackWriteError(f"section {name!r}: count must be >= 0, got {count}")
        self._end_span()
        self._section += 1
        self._declared, self._written = count, 0
        header = self._packer.pack_array_header(count)
        self._emit(header if self._led == name else self._packer.pack(name) + header)
        self._led = None
        self._spans.append(SectionSpan(count, self._sink.size, self._sink.size))

    def write_record(self, record: Mapping[str, Any]) -> None:
        """Write a commit or snapshot map, keys in their given order."""
        self.write_packed(self._packer.pack(dict(record)))

    def write_packed(self, packed: bytes) -> None:
        """Write a commit or snapshot already msgpack-encoded (as the DB stores it), as is."""
        self._start_record(("commits", "snapshots"))
        self._emit(packed)

    def write_object(self, object_id: str, content: bytes) -> None:
        """Write one object whose whole content is in memory."""
        self.begin_object(object_id, len(content))
        self.write_content(content)

    def begin_object(self, object_id: str, size: int) -> None:
        """Start an object of `size` content bytes, to be given by write_content (large blobs)."""
        pack = self._packer.pack
        content_header = pack("content") + _bin_header(size)
        self._start_record(("objects",))
        self._emit(self._packer.pack_map_header(2) + pack("object_id") + pack(object_id))
        self._emit(content_header)
        self._content_left = size

    def write_content(self, chunk: bytes) -> None:
        """Write the next piece of the current object's content."""
        if len(chunk) > self._content_left:
            raise MPackWriteError(
                f"object content overruns its declared size by {len(chunk) - self._content_left}"
            )
        self._content_left -= len(chunk)
        self._emit(chunk)

    def finish(self) -> PackDigest:
        """Check every section was written in full and return the pack's size and sha256."""
        self._check_section_done()
        if self._section != len(SECTIONS) - 1:
            missing = ", ".join(SECTIONS[self._section + 1 :])
            raise MPackWriteError(f"pack finished without section(s): {missing}")
        self._end_span()
        self._finished = True
        return PackDigest(self._sink.size, self._sink.close(), tuple(self._spans))

    def abort(self) -> None:
        """Give up on this pack (a failed build): release the sink."""
        self._sink.abort()

    def _start_record(self, allowed: tuple[str, ...]) -> None:
        self._check_content_done()
        name = SECTIONS[self._section] if self._section >= 0 else None
        if self._finished or name not in allowed:
            raise MPackWriteError(f"cannot write a record here: the current section is {name!r}")
        if self._written == self._declared:
            raise MPackWriteError(f"section {name!r} declared {self._declared} records, got more")
        self._written += 1

    def _check_section_done(self) -> None:
        self._check_content_done()
        if self._finished:
            raise MPackWriteError("the pack is already finished")
        if self._written != self._declared:
            name = SECTIONS[self._section]
            raise MPackWriteError(
                f"section {name!r} declared {self._declared} records, wrote {self._written}"
            )

    def _end_span(self) -> None:
        if self._spans:
            last = self._spans[-1]
            self._spans[-1] = SectionSpan(last.count, last.start, self._sink.size)

    def _check_content_done(self) -> None:
        if self._content_left:
            raise MPackWriteError(f"object content is {self._content_left} bytes short")

    def _emit(self, data: bytes) -> None:
        self._sink.write(data)


def _bin_header(size: int) -> bytes:
    """The msgpack bin header packb would write for `size` bytes (msgpack.Packer has none)."""
    if not 0 <= size < 0x100000000:
        raise MPackWriteError(f"object content size {size} is outside msgpack's bin range")
    if size < 0x100:
        return struct.pack(">BB", 0xC4, size)
    if size < 0x10000:
        return struct.pack(">BH", 0xC5, size)
    return struct.pack(">BI", 0xC6, size)
