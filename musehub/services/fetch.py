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
   and records the row so the next clone hits. Only want sets clones ask for earn a row (the
   head set, one current tip); any other, and every fetch with `have`, is built on demand and
   never recorded (UNCACHED): a stranger cannot fill storage with cached want sets.
4. Every synchronous build takes a hub-wide and a per-repository build slot (advisory locks,
   so across every process); when either is full the fetch gets 503 with Retry-After.
5. A pack storage lost is never promised: each lookup, and each inline answer, checks the
   object first; a row whose object is gone is dropped and the pack built again (the check the
   prebuild and GC share: `lost_packs.still_stored`).

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
from musehub.metrics import (
    BUILD_BYTES,
    BUILD_SECONDS,
    BUILDS_REFUSED,
    FETCH_SECONDS,
    FETCHES,
)
from musehub.services import mpack_cache
from musehub.services.errors import Unavailable
from musehub.services.lost_packs import still_stored
from musehub.services.mpack_build import BuiltMPack, build_and_upload
from musehub.services.mpack_cache import CacheEntry, CloneLookup
from musehub.services.repos import (
    branch_heads,
    could_exist,
    is_readable,
    not_found,
    repo_for_read,
)
from musehub.services.warm_answers import WarmAnswers
from musehub.settings import Settings
from musehub.storage import ObjectStorage

log = logging.getLogger("musehub.fetch")

CacheOutcome = Literal["HIT", "MISS", "UNCACHED"]
AnswerForm = Literal["url", "inline"]
# What a fetch refused for want of a build slot is told to wait.
BUSY_RETRY_SECONDS = 5
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
        NotFound for a repo `user` may not read, as if it did not exist, and Unavailable when
        the answer needs a build and every build slot is taken."""
        started = time.perf_counter()
        wants = mpack_cache.normalise_want(want)
        if have:
            repo_id, answer = await self._uncached(owner, slug, wants, list(have), user)
        else:
            repo_id, answer = await self._clone(owner, slug, wants, user, form)
        _observe(answer.pack, form, repo_id, wants, started)
        return answer

    async def check_readable(self, owner: str, slug: str, user: str | None) -> None:
        """Raises NotFound unless `user` may read the repo: for callers that must refuse a
        stranger before they read a large request body."""
        async with self._sessions() as session:
            await repo_for_read(session, owner, slug, user)

    def forget_repo(self, owner: str, slug: str) -> None:
        """After a push: this process's recent answers for the repo are stale."""
        self._warm.forget_repo(owner, slug)

    async def _clone(
        self, owner: str, slug: str, want: list[str], user: str | None, form: AnswerForm
    ) -> tuple[str, FetchAnswer]:
        found, answer = await self._warm.get_or_lookup(
            owner, slug, want, lambda: self._lookup(owner, slug, want)
        )
        if found is None or not is_readable(found.owner, found.visibility, user):
            raise not_found(owner, slug)
        # Inline bytes are promised by a Content-Length: check the pack is still there first.
        if answer is not None and form == "inline" and not await self._still_stored(answer.pack):
            await self._drop_lost(found.repo_id, answer.pack)
            self._warm.forget_repo(owner, slug)
            answer = None
        if answer is not None:
            return found.repo_id, answer
        if not _asked_by_clones(want, found.branch_heads):
            # An old commit, a subset of the branches: built on demand, never recorded, so a
            # stranger cannot fill the cache with want sets (its object goes with the GC).
            pack = await self._build_unrecorded(found.repo_id, want, [])
            return found.repo_id, FetchAnswer(pack, found.branch_heads)
        pack = await self._build_and_record(found.repo_id, want)
        # Just built (or found by a racing build): a live pack now answers this want set.
        kept = FetchAnswer(replace(pack, cache="HIT"), found.branch_heads)
        self._warm.put(owner, slug, want, found, kept)
        return found.repo_id, FetchAnswer(pack, found.branch_heads)

    async def _lookup(
        self, owner: str, slug: str, want: list[str]
    ) -> tuple[CloneLookup | None, FetchAnswer | None]:
        """One round trip, one look at storage, one presign (and, outside the throttled expiry
        slide, no further database work). Runs once per want set per second and process."""
        if not could_exist(owner, slug):
            return None, None  # a name no repo can have (NUL, newline): not found
        found = await mpack_cache.lookup_clone(self._engine, owner, slug, want)
        if found is None or found.entry is None:
            return found, None
        async with self._sessions() as session:
            entry = await self._usable(session, found.repo_id, found.entry)
            await session.commit()
        if entry is None:
            return found, None  # collected, or lost from storage: build it again
        pack = await self._presigned(entry.mpack_id, entry.size_bytes, entry.sha256, "HIT")
        return found, FetchAnswer(pack, found.branch_heads)

    async def _build_and_record(self, repo_id: str, want: list[str]) -> FetchMPack:
        """The single-flight build of a clone's pack: one build per want set at a time across
        every process; whoever waited finds the row the first one recorded."""
        async with self._sessions() as session:
            entry = await self._live_entry(session, repo_id, want)
            if entry is None:
                # A lost pack's drop holds its object lock: end it before taking the want set's
                # lock, which builders take first (the other order could deadlock with them).
                await session.commit()
                await mpack_cache.lock_want_set(session, repo_id, want)
                entry = await self._live_entry(session, repo_id, want)  # built while we waited?
            if entry is not None:
                await session.commit()  # ends the lock's transaction
                return await self._presigned(entry.mpack_id, entry.size_bytes, entry.sha256, "HIT")
            await self._take_build_slots(session, repo_id)
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
            heads = await branch_heads(session, repo.repo_id)
        pack = await self._build_unrecorded(repo.repo_id, want, have)
        return repo.repo_id, FetchAnswer(pack, heads)

    async def _build_unrecorded(self, repo_id: str, want: list[str], have: list[str]) -> FetchMPack:
        async with self._sessions() as session:
            await self._take_build_slots(session, repo_id)
            built = await self.build(session, repo_id, want, have)
            await session.commit()
        return await self._presigned(built.key, built.digest.size, built.digest.sha256, "UNCACHED")

    async def _take_build_slots(self, session: AsyncSession, repo_id: str) -> None:
        """A hub-wide and a per-repository build slot until the session's transaction ends;
        503 when either is full: a herd of cold fetches must not take the hub down."""
        limits = self._settings.mpack
        if not await mpack_cache.take_build_slot(session, "sync-builds", limits.sync_builds):
            BUILDS_REFUSED.labels(scope="hub").inc()
            raise Unavailable(
                f"the hub is building {limits.sync_builds} packs already; "
                f"try again in {BUSY_RETRY_SECONDS} seconds",
                retry_after=BUSY_RETRY_SECONDS,
            )
        per_repo = limits.sync_builds_per_repo
        if not await mpack_cache.take_build_slot(session, f"sync-builds/{repo_id}", per_repo):
            BUILDS_REFUSED.labels(scope="repo").inc()
            raise Unavailable(
                f"{per_repo} packs of this repository are being built already; "
                f"try again in {BUSY_RETRY_SECONDS} seconds",
                retry_after=BUSY_RETRY_SECONDS,
            )

    async def _usable(
        self, session: AsyncSession, repo_id: str, entry: CacheEntry
    ) -> CacheEntry | None:
        """The entry with its expiry slid, if its pack is still in storage; a row whose pack
        storage lost is dropped, so the caller builds it again instead of promising it."""
        if not await still_stored(
            session,
            self._storage,
            repo_id=repo_id,
            mpack_id=entry.mpack_id,
            size_bytes=entry.size_bytes,
        ):
            return None
        return await self._slide_expiry(session, entry)

    async def _still_stored(self, pack: FetchMPack) -> bool:
        return await self._storage.size(pack.mpack_key) == pack.size

    async def _drop_lost(self, repo_id: str, pack: FetchMPack) -> None:
        async with self._sessions() as session:
            await still_stored(
                session,
                self._storage,
                repo_id=repo_id,
                mpack_id=pack.mpack_key,
                size_bytes=pack.size,
            )
            await session.commit()

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
        """The cache entry to serve, its pack checked and its expiry slid past this answer's
        URL."""
        entry = await mpack_cache.lookup(session, repo_id, want)
        if entry is None:
            return None
        return await self._usable(session, repo_id, entry)

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


def _asked_by_clones(want: list[str], heads: dict[str, str]) -> bool:
    """Whether clones ask for this want set, so that it earns a cache row: the repo's whole head
    set (what `muse clone` sends) or one current branch tip."""
    tips = set(heads.values())
    return want == sorted(tips) or (len(want) == 1 and want[0] in tips)


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
