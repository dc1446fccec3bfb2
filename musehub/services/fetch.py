"""`wire_fetch_mpack`: the answer to `POST /fetch`, as one pack object in storage plus a
presigned URL to it. Both answer forms (URL and inline) are served from that one object.

A clone (`have == []`) looks in the prebuilt-pack cache first: a hit costs one lookup and one
presign, whatever the repo's size. A miss builds, and records the entry so the next clone hits."""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO, Literal, cast

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from musehub.mpack.writer import PackDigest
from musehub.services import mpack_cache
from musehub.services.clone_lookup import CloneLookup
from musehub.services.keys import mpack_key
from musehub.services.mpack_build import (
    FetchPlan,
    assemble_mpack,
    plan_fetch,
    storage_blob_reader,
    upload_mpack,
)
from musehub.settings import Settings
from musehub.storage import ObjectStorage

log = logging.getLogger("musehub.fetch")

CacheOutcome = Literal["HIT", "MISS", "UNCACHED"]


@dataclass(frozen=True)
class FetchMPack:
    mpack_key: str
    size: int
    sha256: str
    url: str
    expires_at: datetime
    cache: CacheOutcome


async def wire_fetch_mpack(
    session: AsyncSession,
    repo_id: str,
    want: list[str],
    have: list[str],
    *,
    storage: ObjectStorage,
    settings: Settings,
) -> FetchMPack:
    """The pack of everything `want` reaches and `have` does not, uploaded under its content
    address and presigned."""
    started = time.perf_counter()
    if have:
        key, digest, _ = await build_and_upload(
            session, repo_id, want, have, storage=storage, settings=settings
        )
        log_fetch_outcome("UNCACHED", repo_id, want, started)
        return await _answer(storage, settings, key, digest.size, digest.sha256, "UNCACHED")

    entry = await _live_entry(session, repo_id, want, settings)
    if entry is None:
        await mpack_cache.lock_want_set(session, repo_id, want)
        entry = await _live_entry(session, repo_id, want, settings)  # built while we waited?
    if entry is not None:
        await session.commit()  # ends the lock's transaction
        log_fetch_outcome("HIT", repo_id, want, started)
        return await _answer(
            storage, settings, entry.mpack_id, entry.size_bytes, entry.sha256, "HIT"
        )

    key, digest, plan = await build_and_upload(
        session, repo_id, want, [], storage=storage, settings=settings
    )
    await mpack_cache.record(
        session,
        repo_id=repo_id,
        want=want,
        mpack_id=key,
        size_bytes=digest.size,
        sha256=digest.sha256,
        commit_count=len(plan.commit_ids),
        object_count=len(plan.objects),
        ttl=settings.mpack_cache_ttl,
    )
    await session.commit()
    log_fetch_outcome("MISS", repo_id, want, started)
    return await _answer(storage, settings, key, digest.size, digest.sha256, "MISS")


async def build_and_upload(
    session: AsyncSession,
    repo_id: str,
    want: list[str],
    have: list[str],
    *,
    storage: ObjectStorage,
    settings: Settings,
) -> tuple[str, PackDigest, FetchPlan]:
    """The synchronous build: plan, assemble with blobs read straight from storage, upload."""
    plan = await plan_fetch(session, repo_id, want, have)
    with tempfile.NamedTemporaryFile(
        dir=settings.work_dir, prefix="fetch-", suffix=".mpack"
    ) as out:
        digest = await assemble_mpack(
            session,
            plan,
            cast(BinaryIO, out),
            storage_blob_reader(storage),
            concurrency=settings.storage.read_concurrency,
        )
        out.flush()
        # Held until the caller commits: GC cannot delete the pack between upload and record.
        await mpack_cache.hold_mpack_object(session, mpack_key(repo_id, digest.sha256))
        # An uncached pack has no row, so only its fresh age keeps GC off it while it is served.
        key = await upload_mpack(storage, repo_id, Path(out.name), digest, replace=bool(have))
    return key, digest, plan


async def serve_warm_clone(
    found: CloneLookup,
    *,
    sessions: async_sessionmaker[AsyncSession],
    storage: ObjectStorage,
    settings: Settings,
) -> FetchMPack | None:
    """The answer to a clone whose pack `lookup_clone` found: one presign, no commit walk, no
    blob read, and (outside the throttled expiry slide) no further database work. None when
    there is no live pack, so the caller builds one. The caller logs the outcome: this answer
    may serve several requests."""
    if found.entry is None:
        return None
    async with sessions() as session:
        entry = await _slide_expiry(session, found.entry, settings)
        await session.commit()
    if entry is None:
        return None  # collected since the lookup: build it again
    return await _answer(storage, settings, entry.mpack_id, entry.size_bytes, entry.sha256, "HIT")


async def _live_entry(
    session: AsyncSession, repo_id: str, want: list[str], settings: Settings
) -> mpack_cache.CacheEntry | None:
    """The cache entry to serve, its expiry slid forward past this answer's presigned URL."""
    entry = await mpack_cache.lookup(session, repo_id, want)
    if entry is None:
        return None
    return await _slide_expiry(session, entry, settings)


async def _slide_expiry(
    session: AsyncSession, entry: mpack_cache.CacheEntry, settings: Settings
) -> mpack_cache.CacheEntry | None:
    """Throttled: usually no write at all (see mpack_cache.extend_on_hit)."""
    return await mpack_cache.extend_on_hit(
        session,
        entry,
        ttl=settings.mpack_cache_ttl,
        presign_ttl=settings.presign_ttl,
        throttle=settings.hit_extension_throttle,
    )


async def _answer(
    storage: ObjectStorage,
    settings: Settings,
    key: str,
    size: int,
    sha256: str,
    cache: CacheOutcome,
) -> FetchMPack:
    ttl = settings.storage.presign_ttl_seconds
    url = await storage.presign_get(key, ttl)
    expires_at = datetime.now(UTC) + timedelta(seconds=ttl)
    return FetchMPack(key, size, sha256, url, expires_at, cache)


def log_fetch_outcome(cache: CacheOutcome, repo_id: str, want: list[str], started: float) -> None:
    tips = ",".join(w[:12] for w in mpack_cache.normalise_want(want))
    log.info(
        "[wire_fetch_mpack] cache=%s repo=%s tip=%s t=%.1fms",
        cache,
        repo_id,
        tips,
        (time.perf_counter() - started) * 1000,
    )
