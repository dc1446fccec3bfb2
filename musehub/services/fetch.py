"""The answer to `POST /fetch`, behind one entry point: `FetchMPacks.answer`.

An answer is one pack object in storage plus a presigned URL to it; both answer forms (URL and
inline) are served from that one object. Like Gitaly's pack-objects cache, the handler makes one
call and everything behind it lives here, with its metrics beside it:

1. A clone (`have == []`) of a want set this process answered in the last second is answered
   from memory (`WarmAnswers`): the pack's key never changes for a want set and its URL stays
   valid for minutes.
2. Otherwise one statement finds the repo, its live cache row and its heads
   (`mpack_cache.lookup_clone`); a hit costs that plus one presign, whatever the repo's size.
3. A miss builds synchronously (`build`, by default `mpack_build.build_and_upload`) under an
   advisory lock on the want set, so a herd of cold clones builds once across every process,
   and records the row so the next clone hits.
4. A fetch with `have` is built on demand and never recorded (UNCACHED).

Every answer is counted (`musehub_fetch_total`, `musehub_fetch_seconds`) and logged as
`[wire_fetch_mpack] cache=HIT|MISS|UNCACHED repo=… tip=… t=…ms` in one place, `_observe`."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Literal

import msgpack
from prometheus_client import Counter, Histogram
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from musehub.db.engine import session_factory
from musehub.logs import info_line
from musehub.metrics import BUILD_BYTES, BUILD_SECONDS, FETCH_SECONDS, FETCHES
from musehub.services import mpack_cache
from musehub.services.mpack_build import BuiltMPack, build_and_upload
from musehub.services.mpack_cache import CacheEntry, CloneLookup
from musehub.services.repos import branch_heads, is_readable, not_found, repo_for_read
from musehub.services.warm_answers import WarmAnswers
from musehub.settings import Settings
from musehub.storage import ObjectStorage

log = logging.getLogger("musehub.fetch")

CacheOutcome = Literal["HIT", "MISS", "UNCACHED"]
AnswerForm = Literal["url", "inline"]
# (session, repo_id, want, have) -> the pack, uploaded; swappable so tests need no patching.
Build = Callable[[AsyncSession, str, Sequence[str], Sequence[str]], Awaitable[BuiltMPack]]


@dataclass(frozen=True)
class FetchMPack:
    mpack_key: str
    size: int
    sha256: str
    url: str
    expires_at: datetime
    cache: CacheOutcome


@dataclass(frozen=True)
class FetchAnswer:
    pack: FetchMPack
    branch_heads: dict[str, str]

    @functools.cached_property
    def url_form(self) -> bytes:
        """The answer to a client that sent `mpack-url`, encoded once: a warm answer is given
        to every request for its want set for a second."""
        return msgpack.packb(
            {
                "mpack_url": self.pack.url,
                "mpack_size": self.pack.size,
                "mpack_sha256": self.pack.sha256,
                "expires_at": self.pack.expires_at.isoformat(),
                "branch_heads": self.branch_heads,
            },
            use_bin_type=True,
        )


class FetchMPacks:
    def __init__(
        self,
        engine: AsyncEngine,
        storage: ObjectStorage,
        settings: Settings,
        *,
        build: Build | None = None,
    ) -> None:
        self._engine = engine
        self._sessions = session_factory(engine)
        self._storage = storage
        self._settings = settings
        self._warm: WarmAnswers[FetchAnswer] = WarmAnswers(settings.api.warm_answer_ttl_seconds)
        self.build: Build = build or self._build_from_storage

    async def answer(
        self,
        owner: str,
        slug: str,
        want: Sequence[str],
        have: Sequence[str],
        user: str | None,
        *,
        form: AnswerForm,
    ) -> FetchAnswer:
        """Everything `want` reaches and `have` does not, as one pack in storage. Raises
        NotFound for a repo `user` may not read, as if it did not exist."""
        started = time.perf_counter()
        wants = mpack_cache.normalise_want(want)
        if have:
            repo_id, answer = await self._uncached(owner, slug, wants, list(have), user)
        else:
            repo_id, answer = await self._clone(owner, slug, wants, user)
        _observe(answer.pack, form, repo_id, wants, started)
        return answer

    def forget_repo(self, owner: str, slug: str) -> None:
        """After a push: this process's recent answers for the repo are stale."""
        self._warm.forget_repo(owner, slug)

    async def _clone(
        self, owner: str, slug: str, want: list[str], user: str | None
    ) -> tuple[str, FetchAnswer]:
        found, answer = await self._warm.get_or_lookup(
            owner, slug, want, lambda: self._lookup(owner, slug, want)
        )
        if found is None or not is_readable(found.owner, found.visibility, user):
            raise not_found(owner, slug)
        if answer is None:
            pack = await self._build_and_record(found.repo_id, want)
            answer = FetchAnswer(pack, found.branch_heads)
            # Just built (or found by a racing build): a live pack now answers this want set.
            kept = FetchAnswer(replace(pack, cache="HIT"), found.branch_heads)
            self._warm.put(owner, slug, want, found, kept)
        return found.repo_id, answer

    async def _lookup(
        self, owner: str, slug: str, want: list[str]
    ) -> tuple[CloneLookup | None, FetchAnswer | None]:
        """One round trip; a live pack is answered with one presign (and, outside the throttled
        expiry slide, no further database work)."""
        found = await mpack_cache.lookup_clone(self._engine, owner, slug, want)
        if found is None or found.entry is None:
            return found, None
        async with self._sessions() as session:
            entry = await self._slide_expiry(session, found.entry)
            await session.commit()
        if entry is None:
            return found, None  # collected since the lookup: build it again
        pack = await self._presigned(entry.mpack_id, entry.size_bytes, entry.sha256, "HIT")
        return found, FetchAnswer(pack, found.branch_heads)

    async def _build_and_record(self, repo_id: str, want: list[str]) -> FetchMPack:
        """The single-flight build of a clone's pack: one build per want set at a time across
        every process; whoever waited finds the row the first one recorded."""
        async with self._sessions() as session:
            entry = await self._live_entry(session, repo_id, want)
            if entry is None:
                await mpack_cache.lock_want_set(session, repo_id, want)
                entry = await self._live_entry(session, repo_id, want)  # built while we waited?
            if entry is not None:
                await session.commit()  # ends the lock's transaction
                return await self._presigned(entry.mpack_id, entry.size_bytes, entry.sha256, "HIT")
            built = await self.build(session, repo_id, want, [])
            await mpack_cache.record(
                session,
                repo_id=repo_id,
                want=want,
                mpack_id=built.key,
                size_bytes=built.digest.size,
                sha256=built.digest.sha256,
                commit_count=built.commit_count,
                object_count=built.object_count,
                ttl=self._settings.mpack_cache_ttl,
            )
            await session.commit()
        return await self._presigned(built.key, built.digest.size, built.digest.sha256, "MISS")

    async def _uncached(
        self, owner: str, slug: str, want: list[str], have: list[str], user: str | None
    ) -> tuple[str, FetchAnswer]:
        async with self._sessions() as session:
            repo = await repo_for_read(session, owner, slug, user)
            built = await self.build(session, repo.repo_id, want, have)
            heads = await branch_heads(session, repo.repo_id)
            await session.commit()
        pack = await self._presigned(built.key, built.digest.size, built.digest.sha256, "UNCACHED")
        return repo.repo_id, FetchAnswer(pack, heads)

    async def _build_from_storage(
        self, session: AsyncSession, repo_id: str, want: Sequence[str], have: Sequence[str]
    ) -> BuiltMPack:
        return await build_and_upload(
            session,
            repo_id,
            want,
            have,
            storage=self._storage,
            work_dir=self._settings.work_dir,
            read_concurrency=self._settings.storage.read_concurrency,
        )

    async def _live_entry(
        self, session: AsyncSession, repo_id: str, want: list[str]
    ) -> CacheEntry | None:
        """The cache entry to serve, its expiry slid forward past this answer's URL."""
        entry = await mpack_cache.lookup(session, repo_id, want)
        if entry is None:
            return None
        return await self._slide_expiry(session, entry)

    async def _slide_expiry(self, session: AsyncSession, entry: CacheEntry) -> CacheEntry | None:
        """Throttled: usually no write at all (see mpack_cache.extend_on_hit)."""
        return await mpack_cache.extend_on_hit(
            session,
            entry,
            ttl=self._settings.mpack_cache_ttl,
            presign_ttl=self._settings.presign_ttl,
            throttle=self._settings.hit_extension_throttle,
        )

    async def _presigned(self, key: str, size: int, sha256: str, cache: CacheOutcome) -> FetchMPack:
        ttl = self._settings.storage.presign_ttl_seconds
        url = await self._storage.presign_get(key, ttl)
        expires_at = datetime.now(UTC) + timedelta(seconds=ttl)
        return FetchMPack(key, size, sha256, url, expires_at, cache)


@functools.cache
def _counted(cache: CacheOutcome, form: AnswerForm) -> tuple[Counter, Histogram]:
    """The labelled series, looked up once: `labels()` locks and hashes on every call."""
    return FETCHES.labels(cache=cache, form=form), FETCH_SECONDS.labels(cache=cache)


def _observe(
    pack: FetchMPack, form: AnswerForm, repo_id: str, want: list[str], started: float
) -> None:
    elapsed = time.perf_counter() - started
    answers, seconds = _counted(pack.cache, form)
    answers.inc()
    seconds.observe(elapsed)
    if pack.cache != "HIT":
        BUILD_SECONDS.labels(path="sync").observe(elapsed)
        BUILD_BYTES.labels(path="sync").inc(pack.size)
    tips = ",".join(w[:12] for w in want)
    ms = elapsed * 1000
    info_line(log, f"[wire_fetch_mpack] cache={pack.cache} repo={repo_id} tip={tips} t={ms:.1f}ms")
