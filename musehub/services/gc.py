"""Garbage collection of prebuilt fetch mpacks: expired cache rows, the pack objects no row names
any more, orphaned pack objects, and presigned uploads nobody finished.

Deletion order, and why a crash at any point is safe:

1. `delete_expired_rows`: a batch of expired rows is deleted in a transaction that does nothing
   else, returning the storage keys they named. (The GC workflow keeps those keys in its
   history, so step 2 is retried with them even if the worker dies in between.)
2. `delete_if_unnamed`: each of those objects is deleted only if no row names it, checked and
   deleted under the object's advisory lock (`mpack_cache.hold_mpack_object`). Every writer
   holds that lock from the moment it uploads (or finds) a pack until the row naming it is
   committed, so no row can appear between the check and the delete. A failed delete raises
   and is retried; deleting an object that is already gone is a no-op.
3. `sweep_orphan_mpacks`: every object under `mpacks/` that no row names and that is older than
   the grace period is deleted the same way (its age re-checked under the lock). Presigned-PUT
   staging objects and multipart uploads (S3) left unfinished past the grace period go too
   (`sweep_stale_uploads`): neither is an object a row can name.
4. `verify_live_packs` (run between 2 and 3): a bounded window of the objects live rows name is
   looked up in storage, and the rows naming one storage lost (or holds cut short) are deleted
   (`lost_packs.still_stored`), so a lost pack's hits never keep its row alive and the run's
   reconcile builds it again. It deletes rows only, and only rows that already name a missing
   object, decided under the object's lock (a pack uploaded again meanwhile keeps its row). A
   pack kept has its zstd copy checked the same way: the row of a copy storage lost goes
   (`encoded_packs.drop_lost_copy`), so the copy is made again instead of promised.

A crash after 1 (or a delete that fails for good in 2) leaves an object no row names: an
orphan, which step 3 of a later run deletes, because the storage listing itself is the durable
to-do list. No order leaves a row naming a missing object: a row is deleted before its object,
never after, and an object goes only while no row names it. (Object first, then row, would
leave exactly that after a crash between the two.) Step 4 can only remove such rows, never make
one: the rows that storage itself broke (an object deleted behind the hub's back).

A pack being served is never deleted under a client: a hit slides its row's expiry past the
presigned URL's end (`mpack_cache.extend_on_hit`), and a pack no row names (an uncached fetch's)
is kept for the grace period, which exceeds the presign TTL."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import TextClause, delete, exists, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from musehub.db.models import FetchMPackCache, MPackChainLink, MPackPart, MPackPartRecord
from musehub.mpack.encoding import raw_key_of
from musehub.services import mpack_cache
from musehub.services.encoded_packs import drop_lost_copy, forget_copies
from musehub.services.lost_packs import still_stored
from musehub.storage import ObjectStorage, StoredObjectInfo

log = logging.getLogger("musehub.gc")

MPACK_PREFIX = "mpacks/"
UPLOAD_PREFIX = "uploads/"
# Storage keys looked up in the database at once while sweeping.
SWEEP_CHUNK = 500
# Keys a dry run lists per kind (the counts cover them all).
EXAMPLES = 20

Progress = Callable[[int], None]
LivePack = tuple[str, str, int]  # mpack_id, repo_id, size_bytes


@dataclass(frozen=True)
class ExpiredRows:
    rows_deleted: int
    # Storage keys the deleted rows named, each once.
    mpack_ids: list[str]


@dataclass
class SweepOutcome:
    scanned: int = 0
    deleted: int = 0
    bytes_freed: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, key: str, size: int) -> None:
        self.deleted += 1
        self.bytes_freed += size
        if len(self.examples) < EXAMPLES:
            self.examples.append(key)


# Deletes a batch of expired rows (their chain links go with them) and returns every storage key
# they named: one-pack objects and chain parts. Every CTE reads the same snapshot, so the links
# are read before the delete cascades to them.
_DELETE_EXPIRED = text(
    """
WITH doomed AS (
    SELECT cache_id FROM musehub_fetch_mpack_cache
    WHERE expires_at < now() ORDER BY expires_at LIMIT :limit
    FOR UPDATE SKIP LOCKED
), linked AS (
    SELECT l.mpack_id FROM musehub_mpack_chain_links l JOIN doomed d ON d.cache_id = l.cache_id
), gone AS (
    DELETE FROM musehub_fetch_mpack_cache c USING doomed d WHERE c.cache_id = d.cache_id
    RETURNING c.mpack_id
)
SELECT (SELECT count(*) FROM gone) AS rows,
       ARRAY(SELECT mpack_id FROM gone WHERE mpack_id IS NOT NULL
             UNION SELECT mpack_id FROM linked) AS keys
"""
)


async def delete_expired_rows(session: AsyncSession, *, limit: int) -> ExpiredRows:
    """Step 1: delete up to `limit` expired rows, oldest expiry first, and commit. Rows another
    GC holds are skipped, so two runs never wait on each other."""
    rows, keys = (await session.execute(_DELETE_EXPIRED, {"limit": limit})).one()
    await session.commit()
    return ExpiredRows(int(rows), sorted(keys))


async def delete_if_unnamed(
    session: AsyncSession,
    storage: ObjectStorage,
    key: str,
    *,
    written_before: datetime | None = None,
) -> int | None:
    """Steps 2 and 3: delete the pack object `key` if no cache row names it (and, with
    `written_before`, only if it was last written before then). Returns the bytes freed, or
    None when the object is kept or already gone. Raises when storage fails to delete."""
    raw_key = raw_key_of(key)  # a zstd copy lives and goes with its raw pack
    try:
        await mpack_cache.hold_mpack_object(session, raw_key)
        if await _named(session, raw_key):
            return None
        if written_before is not None:
            info = await stat(storage, key)
            if info is None or info.last_modified >= written_before:
                return None  # rewritten since it was listed: someone is serving it
            size: int | None = info.size
        else:
            size = await storage.size(key)
            if size is None:
                return None
        # The part's description goes with its object, both under the lock: a failed delete
        # rolls it back, and a crash in between leaves a description of bytes that a later
        # build uploads again (its key is its content), never a row naming a missing object.
        await session.execute(delete(MPackPart).where(MPackPart.mpack_id == key))
        await session.execute(delete(MPackPartRecord).where(MPackPartRecord.mpack_id == key))
        await forget_copies(session, storage, raw_key)
        await storage.delete(key)
        await session.commit()
        return size
    finally:
        await session.rollback()  # ends the transaction, and so the lock


async def sweep_orphan_mpacks(
    session: AsyncSession,
    storage: ObjectStorage,
    *,
    grace: timedelta,
    dry_run: bool = False,
    on_progress: Progress | None = None,
) -> SweepOutcome:
    """Step 3: delete pack objects no row names that were last written more than `grace` ago."""
    cutoff = datetime.now(UTC) - grace
    outcome = SweepOutcome()
    async for chunk in _chunks(_listed(storage, MPACK_PREFIX, outcome, on_progress), SWEEP_CHUNK):
        named = await _named_among(session, [info.key for info in chunk])
        await session.rollback()
        for info in chunk:
            if info.key in named or info.last_modified >= cutoff:
                continue
            freed = (
                info.size
                if dry_run
                else await delete_if_unnamed(session, storage, info.key, written_before=cutoff)
            )
            if freed is not None:
                outcome.add(info.key, freed)
    return outcome


async def sweep_stale_uploads(
    storage: ObjectStorage,
    *,
    grace: timedelta,
    dry_run: bool = False,
    on_progress: Progress | None = None,
) -> SweepOutcome:
    """Delete presigned-PUT staging objects older than `grace`: uploads whose push never came
    (a push ingests and deletes its uploads at once). Then abort the multipart uploads begun
    more than `grace` ago (`abort_stale_multipart_uploads`), counted with them."""
    cutoff = datetime.now(UTC) - grace
    outcome = SweepOutcome()
    async for info in _listed(storage, UPLOAD_PREFIX, outcome, on_progress):
        if info.last_modified < cutoff:
            if not dry_run:
                await storage.delete(info.key)
            outcome.add(info.key, info.size)
    await abort_stale_multipart_uploads(
        storage, grace=grace, dry_run=dry_run, outcome=outcome, on_progress=on_progress
    )
    return outcome


async def abort_stale_multipart_uploads(
    storage: ObjectStorage,
    *,
    grace: timedelta,
    dry_run: bool = False,
    outcome: SweepOutcome | None = None,
    on_progress: Progress | None = None,
) -> SweepOutcome:
    """Abort the multipart uploads (S3) begun more than `grace` ago and never completed: a
    process killed mid-upload leaves its parts stored and billed, and no listing of objects
    shows them. Safe at any time: an unfinished upload is no object, so no row can name it
    (rows are written after their upload completes), and a writer still sending one after
    `grace` (far longer than any upload takes) fails to complete it and sees an error, before
    any row. Their size is not known without listing their parts: counted as 0 bytes. Examples
    are listed as `multipart:<key>`."""
    cutoff = datetime.now(UTC) - grace
    outcome = outcome if outcome is not None else SweepOutcome()
    async for upload in storage.list_unfinished_uploads():
        outcome.scanned += 1
        if on_progress is not None:
            on_progress(outcome.scanned)
        if upload.initiated < cutoff:
            if not dry_run:
                await storage.abort_unfinished_upload(upload)
            outcome.add(f"multipart:{upload.key}", 0)
    return outcome


@dataclass
class VerifyOutcome:
    checked: int = 0
    # Packs storage lost (or holds cut short): the rows naming them were deleted.
    lost: int = 0
    # Zstd copies storage lost (of packs kept): their rows were deleted.
    copies_lost: int = 0


async def verify_live_packs(
    session: AsyncSession,
    storage: ObjectStorage,
    *,
    max_packs: int,
    start: str | None = None,
    on_progress: Progress | None = None,
) -> VerifyOutcome:
    """Step 4: look up in storage at most `max_packs` pack objects that live rows name, in key
    order from `start` (default: a random point), wrapping around, so runs cover every pack
    over time at a bounded cost each; drop the rows of each one storage lost, and the row of
    each kept one's zstd copy storage lost."""
    start = start if start is not None else f"{MPACK_PREFIX}{uuid.uuid4()}/"
    packs = await _live_packs(session, _FROM_START, start, max_packs)
    packs += await _live_packs(session, _BEFORE_START, start, max_packs - len(packs))
    await session.rollback()  # no transaction open while storage answers
    outcome = VerifyOutcome()
    for mpack_id, repo_id, size in packs:
        kept = await still_stored(
            session, storage, repo_id=repo_id, mpack_id=mpack_id, size_bytes=size
        )
        if kept and await drop_lost_copy(session, storage, mpack_id):
            outcome.copies_lost += 1
            log.warning("the zstd copy of %s is gone from storage: its row dropped", mpack_id)
        await session.commit()  # the drops, and the end of the object's lock
        outcome.checked += 1
        outcome.lost += not kept
        if on_progress is not None:
            on_progress(outcome.checked)
    return outcome


# The distinct objects live rows name, as their one-pack object or through their chain, each
# with its repo (keys contain it) and size, in key order from or before :start.
_LIVE_PACKS = """
SELECT key, min(repo_id), min(size) FROM (
    SELECT c.mpack_id AS key, c.repo_id, c.size_bytes AS size
    FROM musehub_fetch_mpack_cache c
    WHERE c.expires_at > now() AND c.mpack_id IS NOT NULL
  UNION ALL
    SELECT p.mpack_id, p.repo_id, p.size_bytes
    FROM musehub_mpack_chain_links l
    JOIN musehub_fetch_mpack_cache c ON c.cache_id = l.cache_id
    JOIN musehub_mpack_parts p ON p.mpack_id = l.mpack_id
    WHERE c.expires_at > now()
) named
WHERE key {order} :start
GROUP BY key ORDER BY key LIMIT :limit
"""
_FROM_START = text(_LIVE_PACKS.format(order=">="))
_BEFORE_START = text(_LIVE_PACKS.format(order="<"))


async def _live_packs(
    session: AsyncSession, query: TextClause, start: str, limit: int
) -> list[LivePack]:
    if limit <= 0:
        return []
    rows = await session.execute(query, {"start": start, "limit": limit})
    return [(key, repo_id, size) for key, repo_id, size in rows]


@dataclass(frozen=True)
class ExpiredPreview:
    rows: int
    # Objects only expired rows name: what step 2 would delete.
    objects: int
    bytes: int
    examples: list[str]


async def preview_expired(session: AsyncSession) -> ExpiredPreview:
    """What steps 1 and 2 would delete now, without deleting anything."""
    expired = FetchMPackCache.expires_at < func.now()
    rows = await session.scalar(select(func.count()).where(expired)) or 0
    freed = (await session.execute(_FREED_BY_EXPIRY)).all()
    return ExpiredPreview(
        rows, len(freed), sum(size for _, size in freed), [key for key, _ in freed[:EXAMPLES]]
    )


# Objects that only expired rows name (as their one-pack object or through their chain).
_FREED_BY_EXPIRY = text(
    """
WITH named AS (
    SELECT c.mpack_id AS key, c.size_bytes AS size, c.expires_at
    FROM musehub_fetch_mpack_cache c WHERE c.mpack_id IS NOT NULL
  UNION ALL
    SELECT p.mpack_id, p.size_bytes, c.expires_at
    FROM musehub_mpack_chain_links l
    JOIN musehub_fetch_mpack_cache c ON c.cache_id = l.cache_id
    JOIN musehub_mpack_parts p ON p.mpack_id = l.mpack_id
)
SELECT key, max(size) FROM named
GROUP BY key HAVING max(expires_at) < now()
ORDER BY key
"""
)


async def stat(storage: ObjectStorage, key: str) -> StoredObjectInfo | None:
    """Size and age of one object (the storage interface lists, it does not stat)."""
    async for info in storage.list(key):
        if info.key == key:
            return info
    return None


async def _named(session: AsyncSession, key: str) -> bool:
    return bool(await session.scalar(select(exists().where(mpack_cache.naming(key)))))


async def _named_among(session: AsyncSession, keys: list[str]) -> set[str]:
    """The keys some row names, as its one-pack object or as a part of its chain (a zstd copy
    counts as named while its raw pack is)."""
    raw_keys = {raw_key_of(key) for key in keys}
    as_pack = select(FetchMPackCache.mpack_id).where(FetchMPackCache.mpack_id.in_(raw_keys))
    as_part = select(MPackChainLink.mpack_id).where(MPackChainLink.mpack_id.in_(raw_keys))
    named = set(await session.scalars(as_pack.union(as_part)))
    return {key for key in keys if raw_key_of(key) in named}


async def _listed(
    storage: ObjectStorage, prefix: str, outcome: SweepOutcome, on_progress: Progress | None
) -> AsyncIterator[StoredObjectInfo]:
    async for info in storage.list(prefix):
        outcome.scanned += 1
        if on_progress is not None:
            on_progress(outcome.scanned)
        yield info


async def _chunks(
    items: AsyncIterator[StoredObjectInfo], size: int
) -> AsyncIterator[list[StoredObjectInfo]]:
    chunk: list[StoredObjectInfo] = []
    async for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
