"""Zstd copies of stored packs (`musehub_mpack_encodings`), made by the prebuild once it has
recorded a pack (`make_copies_for`), or on first demand for a pack it did not make, and recorded.

Why both a raw pack and a copy, not the copy alone: every answer form but one works on raw
packs by byte range (the legacy inline answer joins a chain's parts by their section spans,
compaction joins parts into a new base, `mpack-url` clients get a chain joined into one object),
and all of that stays as it is. The copy costs storage (the gabriel pack: 41.7 MB raw, 22.5 MB
zstd) and one compression per pack, paid by the prebuild after the pack is servable raw (or by
the first client that asks for a pack made elsewhere: a synchronous build's); see the README
("Compressed packs") for the numbers that decided it.

A copy is made under the raw pack's object lock (`mpack_cache.hold_mpack_object`), the lock GC
deletes under, so a copy is never recorded for a raw pack GC just deleted. A request that finds
the lock taken (another request compressing the pack) does not wait for it, holding a database
connection: it is answered with the raw pack, so a herd of zstd clones of a new pack compresses
it once and nobody queues behind the compression. GC deletes a raw pack and its copy together
and treats a copy as named while its raw pack is (`musehub.services.gc`); its verify step drops
the row of a copy storage lost (`drop_lost_copy`), so the copy is made again."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from musehub.db.models import MPackEncoding
from musehub.mpack.encoding import ZSTD, ZstdPackWriter, encoded_key
from musehub.services import mpack_cache
from musehub.services.mpack_cache import hold_mpack_object, try_hold_mpack_object
from musehub.storage import ObjectNotFound, ObjectStorage


@dataclass(frozen=True)
class EncodedPack:
    """The zstd copy of a raw pack: where it is stored, and its size and sha256."""

    key: str
    size: int
    sha256: str


async def stored_copies(
    sessions: async_sessionmaker[AsyncSession], storage: ObjectStorage, mpack_ids: Sequence[str]
) -> dict[str, EncodedPack]:
    """The recorded zstd copies of these raw packs that storage still holds whole (one query,
    one storage look per copy); a raw pack without one is not in the answer."""
    async with sessions() as session:
        found = await _recorded(session, mpack_ids)
        await session.commit()
    return {
        mpack_id: copy
        for mpack_id, copy in found.items()
        if await storage.size(copy.key) == copy.size
    }


async def make_copy(
    sessions: async_sessionmaker[AsyncSession],
    storage: ObjectStorage,
    repo_id: str,
    mpack_id: str,
    work_dir: Path,
) -> EncodedPack | None:
    """Make and record the zstd copy of a raw pack (or find the one made meanwhile). None when
    it cannot be had now: another request is making it, or the raw pack is gone from storage."""
    async with sessions() as session:
        copy = await _encode(session, storage, repo_id, mpack_id, work_dir)
        await session.commit()  # the row, and the end of the raw pack's lock
    return copy


async def make_copies_for(
    sessions: async_sessionmaker[AsyncSession],
    storage: ObjectStorage,
    repo_id: str,
    want: Sequence[str],
    work_dir: Path,
) -> int:
    """Make the missing zstd copies of the packs the want set's live row names (its chain's
    parts, and its one pack); how many were made. A copy another transaction is making, or of a
    pack gone meanwhile, is left to it (or to the on-demand path)."""
    async with sessions() as session:
        entry = await mpack_cache.lookup(session, repo_id, want)
        await session.commit()
    if entry is None:
        return 0
    keys = [part.mpack_id for part in entry.chain.parts] if entry.chain is not None else []
    if entry.mpack_id is not None and entry.mpack_id not in keys:
        keys.append(entry.mpack_id)
    present = await stored_copies(sessions, storage, keys)
    made = 0
    for key in keys:
        if key not in present and await make_copy(sessions, storage, repo_id, key, work_dir):
            made += 1
    return made


async def drop_lost_copy(session: AsyncSession, storage: ObjectStorage, mpack_id: str) -> bool:
    """Drop the row of the raw pack's zstd copy if storage no longer holds the copy whole
    (decided under the raw pack's lock, which copies are made under: a copy being made again
    keeps its row). True when dropped; the caller commits."""
    for locked in (False, True):
        copy = (await _recorded(session, [mpack_id])).get(mpack_id)
        if copy is None or await storage.size(copy.key) == copy.size:
            return False
        if not locked:
            await hold_mpack_object(session, mpack_id)
    await session.execute(
        delete(MPackEncoding).where(
            MPackEncoding.mpack_id == mpack_id, MPackEncoding.encoding == ZSTD
        )
    )
    return True


async def _recorded(session: AsyncSession, mpack_ids: Sequence[str]) -> dict[str, EncodedPack]:
    rows = await session.execute(
        select(MPackEncoding.mpack_id, MPackEncoding.size_bytes, MPackEncoding.sha256).where(
            MPackEncoding.mpack_id.in_(mpack_ids), MPackEncoding.encoding == ZSTD
        )
    )
    return {key: EncodedPack(encoded_key(key), size, sha) for key, size, sha in rows}


async def _encode(
    session: AsyncSession, storage: ObjectStorage, repo_id: str, mpack_id: str, work_dir: Path
) -> EncodedPack | None:
    """Compress the raw pack into its copy and record it, under the raw pack's lock; the
    caller commits. None when another transaction holds the lock (it is making the copy, or GC
    is deleting the pack) or the raw pack is gone."""
    if not await try_hold_mpack_object(session, mpack_id):
        return None
    copy = (await _recorded(session, [mpack_id])).get(mpack_id)
    if copy is not None and await storage.size(copy.key) == copy.size:
        return copy
    handle, name = tempfile.mkstemp(dir=work_dir, prefix="zstd-", suffix=".mpack.zst")
    path = Path(name)
    try:
        with os.fdopen(handle, "wb") as out:
            writer = ZstdPackWriter(out)
            try:
                async for chunk in storage.stream(mpack_id):
                    await asyncio.to_thread(writer.write, chunk)
            except ObjectNotFound:
                return None  # GC took it, or storage lost it: the raw answer's check says
            digest = await asyncio.to_thread(writer.finish)
        copy = EncodedPack(encoded_key(mpack_id), digest.size, digest.sha256)
        await storage.move_file(copy.key, path)
    finally:
        await asyncio.to_thread(path.unlink, missing_ok=True)  # gone if the upload moved it
    values = {"size_bytes": copy.size, "sha256": copy.sha256}
    await session.execute(
        insert(MPackEncoding)
        .values(mpack_id=mpack_id, encoding=ZSTD, repo_id=repo_id, **values)
        .on_conflict_do_update(index_elements=["mpack_id", "encoding"], set_=values)
    )
    return copy


async def forget_copies(session: AsyncSession, storage: ObjectStorage, mpack_id: str) -> None:
    """With a raw pack GC deletes: its copy and the copy's row. The caller holds the raw pack's
    lock and commits."""
    await session.execute(delete(MPackEncoding).where(MPackEncoding.mpack_id == mpack_id))
    await storage.delete(encoded_key(mpack_id))
