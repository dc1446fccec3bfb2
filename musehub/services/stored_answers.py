"""Answers made of stored packs: a cache row's chain (and its one joined pack), or a pack a
build just stored, checked in storage and presigned. The clone and pull paths (`fetch.py`) and
the synchronous builds (`sync_builds.py`) give their answers through here, so a pack storage
lost is never promised (6. in `fetch.py`'s list): every lookup checks the objects first, and a
row naming a lost one is dropped (`lost_packs.still_stored`, the check the prebuild and GC
share)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from musehub.services import mpack_cache
from musehub.services.chains import Chain
from musehub.services.fetch_answer import CacheOutcome, FetchAnswer, FetchMPack, PresignedPart
from musehub.services.lost_packs import still_stored
from musehub.services.mpack_cache import CacheEntry
from musehub.settings import Settings
from musehub.storage import ObjectStorage


class StoredAnswers:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        storage: ObjectStorage,
        settings: Settings,
    ) -> None:
        self._sessions = sessions
        self._storage = storage
        self._settings = settings

    async def live_entry(
        self, session: AsyncSession, repo_id: str, want: list[str]
    ) -> CacheEntry | None:
        """The cache entry to serve, its packs checked and its expiry slid past this answer's
        URLs."""
        entry = await mpack_cache.lookup(session, repo_id, want)
        if entry is None:
            return None
        return await self.usable(session, repo_id, entry)

    async def usable(
        self, session: AsyncSession, repo_id: str, entry: CacheEntry
    ) -> CacheEntry | None:
        """The entry with its expiry slid, if its packs are still in storage; a row naming a
        pack storage lost is dropped, so the caller builds it again instead of promising it."""
        if entry.mpack_id is not None and not await still_stored(
            session,
            self._storage,
            repo_id=repo_id,
            mpack_id=entry.mpack_id,
            size_bytes=entry.size_bytes,
        ):
            return None
        if entry.chain is not None and not await self.parts_stored(session, repo_id, entry.chain):
            return None
        return await self.slide_expiry(session, entry)

    async def parts_stored(self, session: AsyncSession, repo_id: str, chain: Chain) -> bool:
        # Every part looked up at once (a chain is up to a few dozen parts; on S3 each is a
        # round trip); only a part not found whole is looked at again, under its lock.
        sizes = await asyncio.gather(*(self._storage.size(p.mpack_id) for p in chain.parts))
        for part, size in zip(chain.parts, sizes, strict=True):
            if size != part.size and not await still_stored(
                session,
                self._storage,
                repo_id=repo_id,
                mpack_id=part.mpack_id,
                size_bytes=part.size,
            ):
                return False
        return True

    async def still_stored(self, repo_id: str, answer: FetchAnswer) -> bool:
        """Whether every object the answer names is still in storage (a lost one's rows are
        dropped)."""
        async with self._sessions() as session:
            if answer.pack is not None:
                stored = await still_stored(
                    session,
                    self._storage,
                    repo_id=repo_id,
                    mpack_id=answer.pack.mpack_key,
                    size_bytes=answer.pack.size,
                )
            else:
                stored = answer.chain is not None and await self.parts_stored(
                    session, repo_id, answer.chain
                )
            await session.commit()
        return stored

    async def slide_expiry(self, session: AsyncSession, entry: CacheEntry) -> CacheEntry | None:
        """Throttled: usually no write at all (see mpack_cache.extend_on_hit)."""
        return await mpack_cache.extend_on_hit(
            session,
            entry,
            ttl=self._settings.mpack_cache_ttl,
            presign_ttl=self._settings.presign_ttl,
            throttle=self._settings.hit_extension_throttle,
        )

    async def answer_of(
        self, entry: CacheEntry, heads: dict[str, str], cache: CacheOutcome
    ) -> FetchAnswer:
        """A recorded row's answer: its chain, presigned, and its one pack when there is one."""
        pack = None
        if entry.mpack_id is not None and entry.sha256 is not None:
            pack = await self.presigned(entry.mpack_id, entry.size_bytes, entry.sha256, cache)
        if entry.chain is None:
            assert pack is not None  # a row from before chains is one pack
            return FetchAnswer.of_pack(pack, heads)
        return await self.chain_answer(entry.chain, pack, heads, cache)

    async def chain_answer(
        self, chain: Chain, pack: FetchMPack | None, heads: dict[str, str], cache: CacheOutcome
    ) -> FetchAnswer:
        ttl = self._settings.storage.presign_ttl_seconds
        expires_at = datetime.now(UTC) + timedelta(seconds=ttl)
        parts = tuple(
            [
                PresignedPart(await self._storage.presign_get(p.mpack_id, ttl), p.size, p.sha256)
                for p in chain.parts
            ]
        )
        return FetchAnswer(cache, heads, chain.joined_size, expires_at, pack, chain, parts)

    async def presigned(self, key: str, size: int, sha256: str, cache: CacheOutcome) -> FetchMPack:
        ttl = self._settings.storage.presign_ttl_seconds
        url = await self._storage.presign_get(key, ttl)
        expires_at = datetime.now(UTC) + timedelta(seconds=ttl)
        return FetchMPack(key, size, sha256, url, expires_at, cache)
