"""Packs joined by byte ranges (`musehub.mpack.chain`): the joined bytes are exactly the pack
the writer makes of all the parts' records in chain order, whatever the split."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from musehub.mpack.chain import StoredPart, joined_sections, joined_size, joined_stream
from musehub.mpack.inline import INLINE_HEADER, branch_heads_trailer
from musehub.mpack.writer import SECTIONS
from tests.mpack.helpers import make_commit, make_object, make_snapshot, write_pack

Records = tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]


def history(size: int, blob: int) -> Records:
    objects = [make_object(bytes([n % 256]) * (n * blob % 70_000)) for n in range(size)]
    snapshots = [make_snapshot({f"f{n}": objects[n]["object_id"]}) for n in range(size)]
    commits = [make_commit(snapshots[n]["snapshot_id"], f"c{n}") for n in range(size)]
    return commits, snapshots, objects


def split(records: Records, cuts: list[tuple[int, int, int]]) -> list[Records]:
    """Parts whose records, concatenated per section, are the whole history's."""
    parts: list[Any] = []
    taken: tuple[int, ...] = (0, 0, 0)
    for cut in [*cuts, tuple(len(r) for r in records)]:
        ends = tuple(max(t, min(c, len(r))) for t, c, r in zip(taken, cut, records, strict=True))
        parts.append(tuple(r[t:e] for r, t, e in zip(records, taken, ends, strict=True)))
        taken = ends
    return parts


async def joined(stored: dict[str, bytes], parts: list[StoredPart], header: bytes) -> bytes:
    async def read_range(key: str, start: int, end: int) -> AsyncIterator[bytes]:
        data = stored[key][start:end]
        for at in range(0, len(data), 1000):  # several chunks, as storage streams them
            yield data[at : at + 1000]

    return b"".join([chunk async for chunk in joined_stream(parts, read_range, header)])


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(0, 12),
    blob=st.integers(1, 9000),
    cuts=st.lists(st.tuples(*[st.integers(0, 12)] * 3), max_size=5),
)
def test_joined_parts_are_the_pack_of_all_their_records(
    size: int, blob: int, cuts: list[tuple[int, int, int]]
) -> None:
    records = history(size, blob)
    stored, parts = {}, []
    for n, (commits, snapshots, objects) in enumerate(split(records, sorted(cuts))):
        data, digest = write_pack(commits, snapshots, objects)
        stored[f"part{n}"] = data
        parts.append(StoredPart(f"part{n}", digest.sections))
        assert [s.count for s in digest.sections] == [len(commits), len(snapshots), len(objects)]

    whole, digest = write_pack(*records)
    assert asyncio.run(joined(stored, parts, whole[:1])) == whole
    assert joined_size(parts) == len(whole)
    assert joined_sections(parts) == digest.sections

    heads = {"main": "a" * 64}
    inline = asyncio.run(joined(stored, parts, INLINE_HEADER)) + branch_heads_trailer(heads)
    decoded = msgpack.unpackb(inline, raw=False)
    assert list(decoded) == [*SECTIONS, "branch_heads"]
    assert [c["commit_id"] for c in decoded["commits"]] == [c["commit_id"] for c in records[0]]
    assert decoded["branch_heads"] == heads


def test_a_one_part_chain_joins_to_that_part_exactly() -> None:
    data, digest = write_pack(*history(5, 3000))
    part = StoredPart("only", digest.sections)
    assert asyncio.run(joined({"only": data}, [part], data[:1])) == data
