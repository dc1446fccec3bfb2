"""Packs built while a fetch waits (the synchronous path), for a miss or a want set no chain
answers.

- A clone's miss builds under an advisory lock on the want set (`build_and_record`), so a herd
  of cold clones builds once across every process, and records the pack as a one-part chain
  (`record_built`) so the next clone hits. Any other want set, and any pull whose `have` holds
  no chain position, is built for its request alone and never recorded (`unrecorded`: UNCACHED).
- Every build takes a hub-wide and a per-repository build slot (advisory locks, so across every
  process); when either is full the fetch gets 503 with Retry-After.
- A build still running after `stream_builds_after_seconds` answers with the pack as it is
  written (`answer_while_building`), and a fetch this process is building already (the same
  want set and, for a pull, the same `have` as far as the repo knows its ids) joins that build
  instead of starting another; a pull built in another process is found in `pull_packs`."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from musehub.metrics import BUILDS_REFUSED
from musehub.services import chains, mpack_cache, pull_packs
from musehub.services.chains import Chain, ChainPart
from musehub.services.errors import Unavailable
from musehub.services.fetch_answer import CacheOutcome, FetchAnswer
from musehub.services.growing_pack import GrowingPack
from musehub.services.mpack_build import BuiltMPack, PackWatch, build_and_upload
from musehub.services.stored_answers import StoredAnswers
from musehub.settings import Settings
from musehub.storage import ObjectStorage

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


# What a build in flight is found by: the repo, the want set and the part of `have` that
# matters (the ids the repo holds, sorted; empty for a clone). Two fetches with the same key get
# the same pack.
FlightKey = tuple[str, tuple[str, ...], tuple[str, ...]]


@dataclass(frozen=True)
class _Flight:
    """A build whose pack answers every fetch of its key in this process while it runs."""

    task: asyncio.Task[FetchAnswer]
    growing: GrowingPack
    started: float  # time.monotonic()


class SyncBuilds:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        storage: ObjectStorage,
        settings: Settings,
        answers: StoredAnswers,
        *,
        build: Build | None = None,
    ) -> None:
        self._sessions = sessions
        self._storage = storage
        self._settings = settings
        self._answers = answers
        self.build: Build = build or self._build_from_storage
        # Builds whose answer is streamed while they run: kept here so they are not collected,
        # and run to the end even when their client leaves (the next clone finds the row).
        self.streamed: set[asyncio.Task[FetchAnswer]] = set()
        # The builds running in this process, by key: a fetch of the same key streams the same
        # pack (or gets its URL) instead of starting another build or waiting in silence.
        self._flights: dict[FlightKey, _Flight] = {}

    async def answer_while_building(
        self,
        cache: CacheOutcome,
        heads: dict[str, str],
        build: Callable[[GrowingPack | None], Coroutine[Any, Any, FetchAnswer]],
        flight_key: FlightKey | None = None,
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
        flight_key: FlightKey | None,
    ) -> _Flight:
        growing = GrowingPack()
        flight = _Flight(asyncio.create_task(build(growing)), growing, time.monotonic())
        self.streamed.add(flight.task)
        flight.task.add_done_callback(self.streamed.discard)
        flight.task.add_done_callback(functools.partial(_settle, growing))
        if flight_key is not None:
            self._flights[flight_key] = flight
            flight.task.add_done_callback(lambda _: self._land(flight_key, flight))
        return flight

    def _land(self, flight_key: FlightKey, flight: _Flight) -> None:
        if self._flights.get(flight_key) is flight:
            del self._flights[flight_key]

    async def build_and_record(
        self, repo_id: str, want: list[str], heads: dict[str, str], growing: GrowingPack | None
    ) -> FetchAnswer:
        """The single-flight build of a clone's pack: one build per want set at a time across
        every process; whoever waited finds the row the first one recorded."""
        async with self._sessions() as session:
            entry = await self._answers.live_entry(session, repo_id, want)
            if entry is None:
                # A lost pack's drop holds its object lock: end it before taking the want set's
                # lock, which builders take first (the other order could deadlock with them).
                await session.commit()
                alongside = await self._lock_or_build_alongside(
                    session,
                    lambda: mpack_cache.try_lock_want_set(session, repo_id, want),
                    lambda: mpack_cache.lock_want_set(session, repo_id, want),
                    repo_id,
                    want,
                    [],
                    heads,
                    growing,
                )
                if alongside is not None:
                    return alongside
                entry = await self._answers.live_entry(session, repo_id, want)  # built meanwhile?
            if entry is not None:
                await session.commit()  # ends the lock's transaction
                return await self._answers.answer_of(entry, heads, "HIT")
            await self._take_build_slots(session, repo_id)
            built = await self.build(session, repo_id, want, [], watch=growing)
            await record_built(session, repo_id, want, built, self._settings)
            await session.commit()
        return await self._answer_built(built, heads, "MISS")

    async def _lock_or_build_alongside(
        self,
        session: AsyncSession,
        try_lock: Callable[[], Awaitable[bool]],
        lock: Callable[[], Awaitable[None]],
        repo_id: str,
        want: list[str],
        have: list[str],
        heads: dict[str, str],
        growing: GrowingPack | None,
    ) -> FetchAnswer | None:
        """Take a build's lock (None once held). When another process holds it for longer than
        `stream_builds_after_seconds`, longer than a client should sit in silence, stream a
        build of our own if a build slot is free (its answer), else wait for the lock."""
        deadline = time.monotonic() + self._settings.api.stream_builds_after_seconds
        while not await try_lock():
            if time.monotonic() >= deadline:
                if growing is not None and await self._build_slots_free(session, repo_id):
                    return await self._build_alongside(session, repo_id, want, have, heads, growing)
                await session.rollback()
                await lock()
                return None
            await asyncio.sleep(LOCK_POLL_SECONDS)
        return None

    async def _answer_built(
        self, built: BuiltMPack, heads: dict[str, str], cache: CacheOutcome
    ) -> FetchAnswer:
        digest = built.digest
        pack = await self._answers.presigned(built.key, digest.size, digest.sha256, cache)
        return FetchAnswer.of_pack(pack, heads)

    async def _build_alongside(
        self,
        session: AsyncSession,
        repo_id: str,
        want: list[str],
        have: list[str],
        heads: dict[str, str],
        growing: GrowingPack,
    ) -> FetchAnswer:
        """A build another process is making too (its slots taken): streamed to this request
        and not recorded (the other build records its own), so its object goes with the
        orphan sweep."""
        built = await self.build(session, repo_id, want, have, watch=growing)
        await session.commit()
        return await self._answer_built(built, heads, "UNCACHED")

    async def unrecorded(
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
        return await self._answer_built(built, heads, "UNCACHED")

    async def shared_pull(
        self,
        repo_id: str,
        want: list[str],
        have: list[str],
        key: str,
        heads: dict[str, str],
        growing: GrowingPack | None,
    ) -> FetchAnswer:
        """A pull no chain answers, built once for every process asking for it at once (`key`:
        `pull_packs.pull_key`): one builds under the key's lock and shares its pack; whoever
        waited for the lock finds it (UNCACHED all the same: no cache row names it)."""
        async with self._sessions() as session:
            alongside = await self._lock_or_build_alongside(
                session,
                lambda: pull_packs.try_lock(session, key),
                lambda: pull_packs.lock(session, key),
                repo_id,
                want,
                have,
                heads,
                growing,
            )
            if alongside is not None:
                return alongside
            shared = await pull_packs.recent(session, key, pull_packs.reuse_for(self._settings))
            if shared is not None and await self._storage.size(shared.mpack_id) == shared.size:
                await session.commit()
                pack = await self._answers.presigned(
                    shared.mpack_id, shared.size, shared.sha256, "UNCACHED"
                )
                return FetchAnswer.of_pack(pack, heads)
            await self._take_build_slots(session, repo_id)
            built = await self.build(session, repo_id, want, have, watch=growing)
            await pull_packs.record(session, key, repo_id, built)
            await session.commit()
        return await self._answer_built(built, heads, "UNCACHED")

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
