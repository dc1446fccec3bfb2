"""The answer to `POST /fetch`, behind one entry point: `FetchMPacks.answer`.

An answer is stored packs plus presigned URLs to them (`fetch_answer.py`): a chain of parts
(`chains.py`) and, for clients that take one URL, the chain joined into one pack. Like Gitaly's
pack-objects cache, the handler makes one call and everything behind it lives here, with its
metrics beside it:

1. A clone (`have == []`) of a want set this process answered in the last second is answered
   from memory (`WarmAnswers`): a want set's parts never change and their URLs stay valid for
   minutes.
2. Otherwise one statement finds the repo, its live cache row with its chain, and its heads
   (`mpack_cache.lookup_clone`); a hit costs that plus presigns, whatever the repo's size.
3. A miss builds synchronously (`build`, by default `mpack_build.build_and_upload`) under an
   advisory lock on the want set, so a herd of cold clones builds once across every process,
   and records the pack as a one-part chain so the next clone hits. Only want sets clones ask
   for earn a row (the head set, one current tip); any other is built on demand and never
   recorded (UNCACHED): a stranger cannot fill storage with cached want sets.
4. A fetch with `have` holding a position of the want set's chain (a pull after a push) is
   answered with the parts after it, as a hit; any other is built on demand (UNCACHED). The
   chain is looked up once a second per want set (like 1.), the position is found in it in
   memory, and the answer for that position (only its own parts checked and presigned) is
   kept for a second (`RecentRests`): a herd of CI runners pulling the newest push costs one
   lookup a second, like a herd of clones.
5. Every synchronous build takes a hub-wide and a per-repository build slot (advisory locks,
   so across every process); when either is full the fetch gets 503 with Retry-After.
6. A pack storage lost is never promised: each lookup, and each inline answer, checks the
   objects first; a row naming a lost object is dropped and the pack built again (the check
   the prebuild and GC share: `lost_packs.still_stored`).
7. A client that takes one URL of a chain of several parts gets them joined into one pack, by
   byte ranges, on first demand; a clone's joined pack is recorded on its row.

Every answer is counted (`musehub_fetch_total`, `musehub_fetch_seconds`) and logged as
`[wire_fetch_mpack] cache=HIT|MISS|UNCACHED repo=… tip=… t=…ms` in one place, `_observe`."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from musehub.db.engine import session_factory
from musehub.logs import info_line
from musehub.metric_batches import BatchedCounter, BatchedHistogram
from musehub.metrics import BUILD_BYTES, BUILD_SECONDS, BUILDS_REFUSED, FETCH_SECONDS, FETCHES
from musehub.services import chains, mpack_cache
from musehub.services.chains import Chain, ChainPart
from musehub.services.errors import Unavailable
from musehub.services.fetch_answer import (
    AnswerForm,
    CacheOutcome,
    FetchAnswer,
    FetchMPack,
    PresignedPart,
)
from musehub.services.growing_pack import GrowingPack
from musehub.services.lost_packs import still_stored
from musehub.services.mpack_build import BuiltMPack, PackWatch, build_and_upload, join_and_upload
from musehub.services.mpack_cache import EXPIRY_SLACK, CacheEntry, CloneLookup
from musehub.services.recent_rests import RecentRests
from musehub.services.repos import (
    branch_heads,
    could_exist,
    is_readable,
    not_found,
    repo_for_read,
)
from musehub.services.warm_answers import WarmAnswers
from musehub.services.zstd_answers import with_zstd
from musehub.settings import Settings
from musehub.storage import ObjectStorage

log = logging.getLogger("musehub.fetch")

# What a fetch refused for want of a build slot is told to wait.
BUSY_RETRY_SECONDS = 5
# How often a fetch waiting for another process's build of its want set looks at the lock.
LOCK_POLL_SECONDS = 0.05


class Build(Protocol):
    """(session, repo_id, want, have) -> the pack, uploaded; swappable so tests need no patching.
    `watch` is told the pack's temp file as soon as it exists, and when the pack is whole."""

    def __call__(
        self,
        session: AsyncSession,
        repo_id: str,
        want: Sequence[str],
        have: Sequence[str],
        *,
        watch: PackWatch | None = None,
    ) -> Awaitable[BuiltMPack]: ...


@dataclass(frozen=True)
class _Flight:
    """A build whose pack answers every fetch of its want set in this process while it runs."""

    task: asyncio.Task[FetchAnswer]
    growing: GrowingPack
    started: float  # time.monotonic()


__all__ = ["AnswerForm", "CacheOutcome", "FetchAnswer", "FetchMPack", "FetchMPacks"]


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
        self._chains: WarmAnswers[Chain] = WarmAnswers(settings.api.warm_answer_ttl_seconds)
        self._rests = RecentRests(settings.api.warm_answer_ttl_seconds)
        self.build: Build = build or self._build_from_storage
        # Builds whose answer is streamed while they run: kept here so they are not collected,
        # and run to the end even when their client leaves (the next clone finds the row).
        self._streamed_builds: set[asyncio.Task[FetchAnswer]] = set()
        # The recorded builds running in this process, by (repo, want set): a fetch of the same
        # want set streams the same pack instead of waiting for the row in silence.
        self._flights: dict[tuple[str, tuple[str, ...]], _Flight] = {}

    async def answer(
        self,
        owner: str,
        slug: str,
        want: Sequence[str],
        have: Sequence[str],
        user: str | None,
        *,
        form: AnswerForm,
        zstd: bool = False,
    ) -> FetchAnswer:
        """Everything `want` reaches and `have` does not, as stored packs. Raises NotFound for a
        repo `user` may not read, as if it did not exist, and Unavailable when the answer
        needs a build and every build slot is taken. A `url` answer always has its one pack;
        with `zstd` (the client sent `mpack-zstd`) it may have their zstd copies too."""
        started = time.perf_counter()
        wants = mpack_cache.normalise_want(want)
        if have:
            repo_id, answer = await self._with_have(owner, slug, wants, list(have), user, form)
            if zstd and answer.growing is None:
                answer = await self._zstd(answer, form, repo_id)
        else:
            repo_id, answer = await self._clone(owner, slug, wants, user, form, zstd)
        _observe(answer, form, repo_id, wants, started)
        return answer

    async def check_readable(self, owner: str, slug: str, user: str | None) -> None:
        """Raises NotFound unless `user` may read the repo: for callers that must refuse a
        stranger before they read a large request body."""
        async with self._sessions() as session:
            await repo_for_read(session, owner, slug, user)

    def forget_repo(self, owner: str, slug: str) -> None:
        """After a push: this process's recent answers for the repo are stale."""
        self._warm.forget_repo(owner, slug)
        self._chains.forget_repo(owner, slug)
        self._rests.forget_repo(owner, slug)

    async def _clone(
        self, owner: str, slug: str, want: list[str], user: str | None, form: AnswerForm, zstd: bool
    ) -> tuple[str, FetchAnswer]:
        found, answer = await self._warm.get_or_lookup(
            owner, slug, want, lambda: self._lookup(owner, slug, want)
        )
        if found is None or not is_readable(found.owner, found.visibility, user):
            raise not_found(owner, slug)
        # Inline bytes are promised by a Content-Length: check the packs are still there first.
        if (
            answer is not None
            and form == "inline"
            and not await self._still_stored(found.repo_id, answer)
        ):
            self._warm.forget_repo(owner, slug)
            answer = None
        if answer is not None and form == "url" and answer.pack is None:
            answer = await self._joined_for_clone(found.repo_id, want, answer)
            self._warm.put(owner, slug, want, found, answer)
        if answer is not None and zstd and not answer.has_zstd(form):
            answer = await self._zstd(answer, form, found.repo_id)
            self._warm.put(owner, slug, want, found, answer)
        if answer is not None:
            return found.repo_id, answer
        heads = found.branch_heads
        if not _asked_by_clones(want, heads):
            # An old commit, a subset of the branches: built on demand, never recorded, so a
            # stranger cannot fill the cache with want sets (its object goes with the GC).
            return found.repo_id, await self._answer_while_building(
                "UNCACHED",
                heads,
                lambda growing: self._unrecorded(found.repo_id, want, [], heads, growing),
            )

        async def build_and_remember(growing: GrowingPack | None) -> FetchAnswer:
            answer = await self._build_and_record(found.repo_id, want, heads, growing)
            if answer.cache != "UNCACHED":
                # Just built (or found by a racing build): a live pack answers this want set.
                self._warm.put(owner, slug, want, found, answer.as_hit())
            return answer

        flight = (found.repo_id, tuple(want))
        answer = await self._answer_while_building("MISS", heads, build_and_remember, flight)
        if answer.growing is None and form == "url" and answer.pack is None:
            # Another builder recorded the want set as a chain while this request waited.
            answer = await self._joined_for_clone(found.repo_id, want, answer)
        if zstd and answer.growing is None:
            answer = await self._zstd(answer, form, found.repo_id)
        return found.repo_id, answer

    async def _answer_while_building(
        self,
        cache: CacheOutcome,
        heads: dict[str, str],
        build: Callable[[GrowingPack | None], Coroutine[Any, Any, FetchAnswer]],
        flight_key: tuple[str, tuple[str, ...]] | None = None,
    ) -> FetchAnswer:
        """The answer of a build for this request. A build still running after
        `stream_builds_after_seconds` answers with the pack as it is written, inline, instead of
        silence until it is done: a big repo's build outlasts a proxy's or the client's read
        timeout. Clients that asked for URLs get that inline answer too (every client reads one:
        a hub without URLs sends nothing else); a URL would need the finished pack's hash.
        Errors before that answer as usual (404, 503); after it, cut the stream. With
        `flight_key`, a build of the same key already running in this process is joined, not
        started again: its pack, as it is written, answers this request too."""
        flight = self._flights.get(flight_key) if flight_key is not None else None
        joined = flight is not None
        if flight is None:
            flight = self._take_off(build, flight_key)
        patience = self._settings.api.stream_builds_after_seconds
        waited = time.monotonic() - flight.started
        # Not cancelled with this request: a client that leaves does not waste the build.
        done, _ = await asyncio.wait({flight.task}, timeout=max(0.0, patience - waited))
        if not done:
            await flight.growing.wait_attached()  # its file exists (or the build is over)
        if not flight.task.done():
            return FetchAnswer.while_building(flight.growing.reader(), heads, cache)
        answer = flight.task.result()
        if not joined or answer.cache == "UNCACHED":
            return answer
        return answer.as_hit()  # built for another request, recorded for this one too

    def _take_off(
        self,
        build: Callable[[GrowingPack | None], Coroutine[Any, Any, FetchAnswer]],
        flight_key: tuple[str, tuple[str, ...]] | None,
    ) -> _Flight:
        growing = GrowingPack()
        flight = _Flight(asyncio.create_task(build(growing)), growing, time.monotonic())
        self._streamed_builds.add(flight.task)
        flight.task.add_done_callback(self._streamed_builds.discard)
        flight.task.add_done_callback(functools.partial(_settle, growing))
        if flight_key is not None:
            self._flights[flight_key] = flight
            flight.task.add_done_callback(lambda _: self._land(flight_key, flight))
        return flight

    def _land(self, flight_key: tuple[str, tuple[str, ...]], flight: _Flight) -> None:
        if self._flights.get(flight_key) is flight:
            del self._flights[flight_key]

    async def _zstd(self, answer: FetchAnswer, form: AnswerForm, repo_id: str) -> FetchAnswer:
        return await with_zstd(
            answer,
            form,
            repo_id=repo_id,
            sessions=self._sessions,
            storage=self._storage,
            work_dir=self._settings.work_dir,
            presign_ttl_seconds=self._settings.storage.presign_ttl_seconds,
        )

    async def _lookup(
        self, owner: str, slug: str, want: list[str]
    ) -> tuple[CloneLookup | None, FetchAnswer | None]:
        """One round trip, one look at storage per pack, presigns (and, outside the throttled
        expiry slide, no further database work). Runs once per want set per second and
        process."""
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
        return found, await self._answer_of(entry, found.branch_heads, "HIT")

    async def _build_and_record(
        self, repo_id: str, want: list[str], heads: dict[str, str], growing: GrowingPack | None
    ) -> FetchAnswer:
        """The single-flight build of a clone's pack: one build per want set at a time across
        every process; whoever waited finds the row the first one recorded."""
        async with self._sessions() as session:
            entry = await self._live_entry(session, repo_id, want)
            if entry is None:
                # A lost pack's drop holds its object lock: end it before taking the want set's
                # lock, which builders take first (the other order could deadlock with them).
                await session.commit()
                if not await self._lock_want_set_patiently(session, repo_id, want):
                    # Another process builds it, for longer than a client should sit in
                    # silence: stream a build of our own, if a build slot is free.
                    if growing is not None and await self._build_slots_free(session, repo_id):
                        return await self._build_alongside(session, repo_id, want, heads, growing)
                    await session.rollback()
                    await mpack_cache.lock_want_set(session, repo_id, want)
                entry = await self._live_entry(session, repo_id, want)  # built while we waited?
            if entry is not None:
                await session.commit()  # ends the lock's transaction
                return await self._answer_of(entry, heads, "HIT")
            await self._take_build_slots(session, repo_id)
            built = await self.build(session, repo_id, want, [], watch=growing)
            await record_built(session, repo_id, want, built, self._settings)
            await session.commit()
        pack = await self._presigned(built.key, built.digest.size, built.digest.sha256, "MISS")
        return FetchAnswer.of_pack(pack, heads)

    async def _lock_want_set_patiently(
        self, session: AsyncSession, repo_id: str, want: list[str]
    ) -> bool:
        """The want set's lock, if it comes within `stream_builds_after_seconds`."""
        deadline = time.monotonic() + self._settings.api.stream_builds_after_seconds
        while not await mpack_cache.try_lock_want_set(session, repo_id, want):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(LOCK_POLL_SECONDS)
        return True

    async def _build_alongside(
        self,
        session: AsyncSession,
        repo_id: str,
        want: list[str],
        heads: dict[str, str],
        growing: GrowingPack,
    ) -> FetchAnswer:
        """A build of a want set another process is building (its slots taken): streamed to
        this request and not recorded (the other build records its own), so its object goes
        with the orphan sweep."""
        built = await self.build(session, repo_id, want, [], watch=growing)
        await session.commit()
        pack = await self._presigned(built.key, built.digest.size, built.digest.sha256, "UNCACHED")
        return FetchAnswer.of_pack(pack, heads)

    async def _with_have(
        self,
        owner: str,
        slug: str,
        want: list[str],
        have: list[str],
        user: str | None,
        form: AnswerForm,
    ) -> tuple[str, FetchAnswer]:
        """A pull or fetch: the rest of the want set's chain when `have` holds one of its
        positions, else a build for this request."""
        warm = await self._warm_rest(owner, slug, want, have, user, form)
        if warm is not None:
            return warm
        async with self._sessions() as session:
            repo = await repo_for_read(session, owner, slug, user)
            heads = await branch_heads(session, repo.repo_id)
            entry = await mpack_cache.lookup(session, repo.repo_id, want)
            rest = entry.chain.after(have) if entry is not None and entry.chain else None
            stored = rest is not None and await self._parts_stored(session, repo.repo_id, rest)
            if entry is not None and rest is not None and rest.parts and stored:
                # The row must outlive the URLs this answer hands out (None: GC took it).
                slid = await self._slide_expiry(session, entry)
                await session.commit()
                if slid is not None:
                    answer = await self._answer_of_rest(repo.repo_id, rest, heads, form)
                    return repo.repo_id, answer
            await session.commit()  # ends a lost part's drop
        return repo.repo_id, await self._answer_while_building(
            "UNCACHED",
            heads,
            lambda growing: self._unrecorded(repo.repo_id, want, have, heads, growing),
        )

    async def _warm_rest(
        self,
        owner: str,
        slug: str,
        want: list[str],
        have: list[str],
        user: str | None,
        form: AnswerForm,
    ) -> tuple[str, FetchAnswer] | None:
        """A pull answered like a warm clone: the want set's chain found by one lookup a second
        (`_chains`, none in between), the position `have` holds found in it in memory, and the
        answer for that position (only its parts checked in storage and presigned) kept for a
        second (`RecentRests`). None when no live chain answers the want set, `have` holds none
        of its positions, a part is gone, or the row would expire before the URLs: the caller
        looks again in the database (sliding the expiry), and builds."""
        found, chain = await self._chains.get_or_lookup(
            owner, slug, want, lambda: self._chain_lookup(owner, slug, want)
        )
        if found is None or not is_readable(found.owner, found.visibility, user):
            raise not_found(owner, slug)
        rest = chain.after(have) if chain is not None else None
        if found.entry is None or rest is None or not rest.parts:
            return None
        if found.entry.expires_at < datetime.now(UTC) + self._settings.presign_ttl + EXPIRY_SLACK:
            return None  # the database path slides it past this answer's URLs
        key = (owner, slug, tuple(want), tuple(p.mpack_id for p in rest.parts))
        pull = self._rests.get(key)
        if pull is None or (form == "url" and pull.pack is None):
            repo_id, heads = found.repo_id, found.branch_heads

            async def fresh() -> FetchAnswer | None:
                async with self._sessions() as session:
                    stored = await self._parts_stored(session, repo_id, rest)
                    await session.commit()  # ends a lost part's drop
                if not stored:
                    self.forget_repo(owner, slug)
                    return None
                return await self._answer_of_rest(repo_id, rest, heads, form)

            # One check and presign for a herd asking at once (recent_rests.RecentRests.once).
            made = await self._rests.once((key, form), fresh)
            if made is None:
                return None
            pull = made
        elif form == "inline" and not await self._still_stored(found.repo_id, pull):
            self.forget_repo(owner, slug)
            return None
        self._rests.put(key, pull)
        return found.repo_id, pull

    async def _chain_lookup(
        self, owner: str, slug: str, want: list[str]
    ) -> tuple[CloneLookup | None, Chain | None]:
        """The repo, its heads and the want set's live chain: one statement, nothing else (a
        pull checks and presigns only the parts it sends)."""
        if not could_exist(owner, slug):
            return None, None
        found = await mpack_cache.lookup_clone(self._engine, owner, slug, want)
        chain = found.entry.chain if found is not None and found.entry is not None else None
        return found, chain

    async def _answer_of_rest(
        self, repo_id: str, rest: Chain, heads: dict[str, str], form: AnswerForm
    ) -> FetchAnswer:
        """The parts after the client's position; as one pack too when it is one part, or when
        the client takes one URL (joined for this request, not recorded: a pull's rest is
        short-lived, and its object goes with the orphan sweep)."""
        pack = None
        if len(rest.parts) == 1:
            only = rest.parts[0]
            pack = await self._presigned(only.mpack_id, only.size, only.sha256, "HIT")
        elif form == "url":
            key, digest = await join_and_upload(
                self._storage, repo_id, [p.stored for p in rest.parts], self._settings.work_dir
            )
            pack = await self._presigned(key, digest.size, digest.sha256, "HIT")
        return await self._chain_answer(rest, pack, heads, "HIT")

    async def _joined_for_clone(
        self, repo_id: str, want: list[str], answer: FetchAnswer
    ) -> FetchAnswer:
        """The clone's chain joined into one pack and recorded on its row, once for everyone
        (under the want set's lock): for clients that take one URL."""
        assert answer.chain is not None
        async with self._sessions() as session:
            await mpack_cache.lock_want_set(session, repo_id, want)
            entry = await mpack_cache.lookup(session, repo_id, want)
            if entry is not None and entry.mpack_id is not None and entry.sha256 is not None:
                key, size, sha256 = entry.mpack_id, entry.size_bytes, entry.sha256
            else:
                parts = [p.stored for p in answer.chain.parts]
                key, digest = await join_and_upload(
                    self._storage, repo_id, parts, self._settings.work_dir
                )
                await mpack_cache.hold_mpack_object(session, key)
                size, sha256 = digest.size, digest.sha256
                await mpack_cache.record_joined(session, repo_id, want, key, sha256)
            await session.commit()
        pack = await self._presigned(key, size, sha256, answer.cache)
        return FetchAnswer(
            answer.cache,
            answer.branch_heads,
            answer.size,
            answer.expires_at,
            pack,
            answer.chain,
            answer.parts,
        )

    async def _unrecorded(
        self,
        repo_id: str,
        want: list[str],
        have: list[str],
        heads: dict[str, str],
        growing: GrowingPack | None,
    ) -> FetchAnswer:
        """A pack built for this request alone: no row names it."""
        async with self._sessions() as session:
            await self._take_build_slots(session, repo_id)
            built = await self.build(session, repo_id, want, have, watch=growing)
            await session.commit()
        pack = await self._presigned(built.key, built.digest.size, built.digest.sha256, "UNCACHED")
        return FetchAnswer.of_pack(pack, heads)

    async def _take_build_slots(self, session: AsyncSession, repo_id: str) -> None:
        """A hub-wide and a per-repository build slot until the session's transaction ends;
        503 when either is full: a herd of cold fetches must not take the hub down."""
        full = await self._try_build_slots(session, repo_id)
        if full is None:
            return
        BUILDS_REFUSED.labels(scope=full).inc()
        limits = self._settings.mpack
        if full == "hub":
            raise Unavailable(
                f"the hub is building {limits.sync_builds} packs already; "
                f"try again in {BUSY_RETRY_SECONDS} seconds",
                retry_after=BUSY_RETRY_SECONDS,
            )
        raise Unavailable(
            f"{limits.sync_builds_per_repo} packs of this repository are being built already; "
            f"try again in {BUSY_RETRY_SECONDS} seconds",
            retry_after=BUSY_RETRY_SECONDS,
        )

    async def _build_slots_free(self, session: AsyncSession, repo_id: str) -> bool:
        """Both build slots taken (until the transaction ends), or neither: False."""
        if await self._try_build_slots(session, repo_id) is None:
            return True
        await session.rollback()  # gives back the hub-wide slot if only it was taken
        return False

    async def _try_build_slots(self, session: AsyncSession, repo_id: str) -> str | None:
        """Take both slots; None when taken, else the scope that is full ("hub" or "repo")."""
        limits = self._settings.mpack
        if not await mpack_cache.take_build_slot(session, "sync-builds", limits.sync_builds):
            return "hub"
        per_repo = limits.sync_builds_per_repo
        if not await mpack_cache.take_build_slot(session, f"sync-builds/{repo_id}", per_repo):
            return "repo"
        return None

    async def _usable(
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
        if entry.chain is not None and not await self._parts_stored(session, repo_id, entry.chain):
            return None
        return await self._slide_expiry(session, entry)

    async def _parts_stored(self, session: AsyncSession, repo_id: str, chain: Chain) -> bool:
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

    async def _still_stored(self, repo_id: str, answer: FetchAnswer) -> bool:
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
                stored = answer.chain is not None and await self._parts_stored(
                    session, repo_id, answer.chain
                )
            await session.commit()
        return stored

    async def _build_from_storage(
        self,
        session: AsyncSession,
        repo_id: str,
        want: Sequence[str],
        have: Sequence[str],
        *,
        watch: PackWatch | None = None,
    ) -> BuiltMPack:
        return await build_and_upload(
            session,
            repo_id,
            want,
            have,
            storage=self._storage,
            work_dir=self._settings.work_dir,
            read_concurrency=self._settings.storage.read_concurrency,
            watch=watch,
        )

    async def _live_entry(
        self, session: AsyncSession, repo_id: str, want: list[str]
    ) -> CacheEntry | None:
        """The cache entry to serve, its packs checked and its expiry slid past this answer's
        URLs."""
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

    async def _answer_of(
        self, entry: CacheEntry, heads: dict[str, str], cache: CacheOutcome
    ) -> FetchAnswer:
        """A recorded row's answer: its chain, presigned, and its one pack when there is one."""
        pack = None
        if entry.mpack_id is not None and entry.sha256 is not None:
            pack = await self._presigned(entry.mpack_id, entry.size_bytes, entry.sha256, cache)
        if entry.chain is None:
            assert pack is not None  # a row from before chains is one pack
            return FetchAnswer.of_pack(pack, heads)
        return await self._chain_answer(entry.chain, pack, heads, cache)

    async def _chain_answer(
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

    async def _presigned(self, key: str, size: int, sha256: str, cache: CacheOutcome) -> FetchMPack:
        ttl = self._settings.storage.presign_ttl_seconds
        url = await self._storage.presign_get(key, ttl)
        expires_at = datetime.now(UTC) + timedelta(seconds=ttl)
        return FetchMPack(key, size, sha256, url, expires_at, cache)


async def record_built(
    session: AsyncSession, repo_id: str, want: list[str], built: BuiltMPack, settings: Settings
) -> None:
    """Record a pack just built for a want set as that want set's one-part chain."""
    part = ChainPart(
        built.key, built.digest.size, built.digest.sha256, tuple(want), built.digest.sections
    )
    await chains.record_part(session, repo_id, built.key, built.digest)
    await chains.record_held(session, repo_id, built.key, built.snapshot_ids, built.object_ids)
    await mpack_cache.record_chain(
        session, repo_id=repo_id, want=want, chain=Chain((part,)), ttl=settings.mpack_cache_ttl
    )


def _settle(growing: GrowingPack, task: asyncio.Task[FetchAnswer]) -> None:
    """Hand a streamed build's outcome to its readers (and retrieve its error, so an answer
    that was never streamed does not log it as never retrieved)."""
    if task.cancelled():
        growing.settle(None, asyncio.CancelledError())
    elif (error := task.exception()) is not None:
        growing.settle(None, error)
    else:
        growing.settle(task.result().size)


@functools.cache
def _counted(cache: CacheOutcome, form: AnswerForm) -> tuple[BatchedCounter, BatchedHistogram]:
    """The labelled series, looked up once: `labels()` locks and hashes on every call."""
    return BatchedCounter(FETCHES.labels(cache=cache, form=form)), BatchedHistogram(
        FETCH_SECONDS.labels(cache=cache)
    )


def _asked_by_clones(want: list[str], heads: dict[str, str]) -> bool:
    """Whether clones ask for this want set, so that it earns a cache row: the repo's whole head
    set (what `muse clone` sends) or one current branch tip."""
    tips = set(heads.values())
    return want == sorted(tips) or (len(want) == 1 and want[0] in tips)


def _observe(
    answer: FetchAnswer, form: AnswerForm, repo_id: str, want: list[str], started: float
) -> None:
    elapsed = time.perf_counter() - started
    answers, seconds = _counted(answer.cache, form)
    answers.inc()
    seconds.observe(elapsed)
    if answer.cache != "HIT":
        BUILD_SECONDS.labels(path="sync").observe(elapsed)
        BUILD_BYTES.labels(path="sync").inc(answer.size)
    tips = ",".join(w[:12] for w in want)
    ms = elapsed * 1000
    info_line(
        log, f"[wire_fetch_mpack] cache={answer.cache} repo={repo_id} tip={tips} t={ms:.1f}ms"
    )
