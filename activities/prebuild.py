"""The prebuild steps as activities: the only place the prebuild workflow touches the database
and object storage. Each step calls the same build code the synchronous fetch uses
(`musehub.services.mpack_build`); the files the steps hand each other live in this worker's
staging folder (`musehub.services.staging`)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.common import Heartbeat, business_error, business_errors
from musehub.contract import (
    PACK_GONE,
    STAGING_LOST,
    TIP_GONE,
    AssembleResult,
    BuildStepInput,
    CheckCacheInput,
    CheckCacheResult,
    ClaimWorkerInput,
    ClaimWorkerResult,
    DiscardBuildInput,
    DiscardBuildResult,
    LoadBlobsResult,
    RecordCacheInput,
    RecordCacheResult,
    UploadInput,
    UploadResult,
    ZstdCopiesInput,
    ZstdCopiesResult,
)
from musehub.metrics import BUILD_BYTES, BUILD_SECONDS, PREBUILD_QUEUE_DELAY
from musehub.mpack.writer import PackDigest, SectionSpan
from musehub.services import history, mpack_cache, top_ups
from musehub.services.blob_reads import storage_blob_reader
from musehub.services.chains import Chain
from musehub.services.compaction import needs_compaction
from musehub.services.encoded_packs import make_copies_for
from musehub.services.errors import NotFound
from musehub.services.keys import mpack_key
from musehub.services.lost_packs import still_stored
from musehub.services.mpack_build import FetchPlan, assemble_mpack, build_planned, upload_mpack
from musehub.services.staging import StagingArea
from musehub.services.superseded import unless_superseded
from musehub.settings import Settings
from musehub.storage import ObjectStorage

# Plans kept for builds between their load and assemble steps. A long history's plan is large,
# and losing one only costs its assemble step a second planning, so few are kept.
KEPT_PLANS = 8
# A top-up with at most this many bytes of blobs is built by the cache check itself, on the
# shared queue (a one-commit push's is a few KB): staging it would cost four more activities.
SMALL_TOP_UP_BYTES = 8 * 1024 * 1024
log = logging.getLogger("musehub.prebuild")


class PrebuildActivities:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        storage: ObjectStorage,
        settings: Settings,
        *,
        staging: StagingArea,
        worker_task_queue: str,
    ) -> None:
        self._sessions = sessions
        self._storage = storage
        self._settings = settings
        self._staging = staging
        self._worker_task_queue = worker_task_queue
        self._plans: OrderedDict[str, tuple[FetchPlan, list[str]]] = OrderedDict()

    # -- on the shared prebuild queue ---------------------------------------------------------

    @activity.defn(name="check_fetch_mpack_cache")
    async def check_cache(self, target: CheckCacheInput) -> CheckCacheResult:
        async with self._sessions() as session:
            checked = await self._checked(session, target)
        return checked or CheckCacheResult("build", task_queue=self._worker_task_queue)

    @activity.defn(name="check_or_append_top_up")
    async def check_or_append(self, target: CheckCacheInput) -> CheckCacheResult:
        """`check_cache`, and when the want set is a small top-up planned from what was pushed
        alone (the usual one-commit push), its build and record too: one step instead of five,
        so a push is servable in about one activity's round trip. Anything else (a base, a big
        top-up, a forced rebuild) gets "build", for the staged steps on this worker; so does a
        quick build that failed (they report a missing blob, and retry the rest)."""
        began = time.perf_counter()
        steps: dict[str, float] = {}
        async with self._sessions() as session:
            checked = await self._checked(session, target)
            steps["check"] = time.perf_counter() - began
            if checked is None and not target.force:
                try:
                    checked = await self._append_small_top_up(session, target, steps)
                except Exception as exc:
                    await session.rollback()
                    activity.logger.warning("quick top-up of %s failed: %r", target.want, exc)
        log.info(
            "check_or_append repo=%s heads=%d verdict=%s t=%.1fms %s",
            target.repo_id,
            len(target.want),
            checked.verdict if checked else "build",
            (time.perf_counter() - began) * 1000,
            " ".join(f"{k}={v * 1000:.1f}ms" for k, v in steps.items()),
        )
        return checked or CheckCacheResult("build", task_queue=self._worker_task_queue)

    @activity.defn(name="claim_build_worker")
    async def claim_worker(self, claim: ClaimWorkerInput) -> ClaimWorkerResult:
        return ClaimWorkerResult(self._worker_task_queue)

    @activity.defn(name="record_fetch_mpack_cache")
    async def record_cache(self, pack: RecordCacheInput) -> RecordCacheResult:
        async with self._sessions() as session:
            # GC may have collected an identical old pack the upload step found and kept; under
            # this lock GC waits, so a pack still there now stays until the row is committed.
            await self._hold_stored(session, pack.mpack_id, pack.size)
            if pack.sections:
                cache_id, chain = await self._record_chain(session, pack)
                await session.commit()
                return RecordCacheResult(cache_id, needs_compaction(chain, self._settings))
            entry = await mpack_cache.record(
                session,
                repo_id=pack.repo_id,
                want=pack.want,
                mpack_id=pack.mpack_id,
                size_bytes=pack.size,
                sha256=pack.sha256,
                commit_count=pack.commits,
                object_count=pack.objects,
                ttl=self._settings.mpack_cache_ttl,
            )
            await session.commit()
        return RecordCacheResult(entry.cache_id)

    @activity.defn(name="make_fetch_mpack_zstd_copies")
    async def make_zstd_copies(self, target: ZstdCopiesInput) -> ZstdCopiesResult:
        """After the record step: the zstd copies of the want set's packs, so the first
        `mpack-zstd` clone finds them (the pack is servable raw before this runs)."""
        async with Heartbeat():
            made = await make_copies_for(
                self._sessions, self._storage, target.repo_id, target.want, self._settings.work_dir
            )
        return ZstdCopiesResult(made)

    # -- on this worker's own queue: the steps that hand local files to each other -----------

    @activity.defn(name="load_fetch_mpack_blobs")
    async def load_blobs(self, step: BuildStepInput) -> LoadBlobsResult:
        """Stage every large blob the pack needs; a retry keeps what an earlier attempt staged."""
        info = activity.info()
        PREBUILD_QUEUE_DELAY.observe(
            (info.started_time - info.current_attempt_scheduled_time).total_seconds()
        )
        with business_errors():
            return await unless_superseded(
                self._sessions, step.repo_id, step.want, self._load_blobs(step)
            )

    @activity.defn(name="assemble_fetch_mpack")
    async def assemble(self, step: BuildStepInput) -> AssembleResult:
        with business_errors():
            return await unless_superseded(
                self._sessions, step.repo_id, step.want, self._assemble(step)
            )

    @activity.defn(name="upload_fetch_mpack")
    async def upload(self, built: UploadInput) -> UploadResult:
        """Upload the pack, then remove this build's staging folder (so a successful build needs
        no discard step)."""
        with business_errors():
            pack = self._staging.staged_pack(built.build_id, built.size)
            if pack is None:
                return UploadResult(await self._uploaded_earlier(built))
            async with Heartbeat():
                # The staging folder goes next: the backend may take the file instead of a copy.
                key = await upload_mpack(
                    self._storage,
                    built.repo_id,
                    pack,
                    PackDigest(built.size, built.sha256),
                    move=True,
                )
            await self._discard(built.build_id)
        return UploadResult(key)

    @activity.defn(name="discard_fetch_mpack_build")
    async def discard(self, build: DiscardBuildInput) -> DiscardBuildResult:
        with business_errors():
            return DiscardBuildResult(await self._discard(build.build_id))

    # -- the steps' work ------------------------------------------------------------------------

    async def _checked(
        self, session: AsyncSession, target: CheckCacheInput
    ) -> CheckCacheResult | None:
        """ "gone" or "fresh", or None: the want set is to be built."""
        known = await history.existing_commit_ids(session, target.repo_id, target.want)
        gone = sorted(set(target.want) - known)
        if gone:
            return CheckCacheResult("gone", f"commit {gone[0]} is no longer in the repository")
        if not target.force and await self._cached(session, target):
            return CheckCacheResult("fresh", "a live pack already answers this want set")
        await session.commit()  # the rows of a pack storage lost are dropped
        return None

    async def _append_small_top_up(
        self, session: AsyncSession, target: CheckCacheInput, steps: dict[str, float]
    ) -> CheckCacheResult | None:
        """Build and record the want set's top-up here when it is planned from what was pushed
        alone and holds at most SMALL_TOP_UP_BYTES of blobs; None: leave it to the staged
        steps."""
        started = time.perf_counter()
        planned = await top_ups.plan_quick_top_up(
            session,
            target.repo_id,
            target.want,
            compact_parts=self._settings.mpack.chain_compact_parts,
            steps=steps,
        )
        if planned is None:
            return None
        plan, base_want = planned
        if sum(o.size for o in plan.objects) > SMALL_TOP_UP_BYTES:
            return None
        mark = time.perf_counter()
        built = await build_planned(
            session,
            plan,
            storage=self._storage,
            work_dir=self._settings.work_dir,
            read_concurrency=self._settings.storage.read_concurrency,
        )
        steps["build"] = time.perf_counter() - mark
        mark = time.perf_counter()
        try:
            await top_ups.record_held(session, target.repo_id, built.key, plan)
            cache_id, chain = await top_ups.record_top_up(
                session,
                self._storage,
                repo_id=target.repo_id,
                want=target.want,
                base_want=base_want,
                mpack_id=built.key,
                digest=built.digest,
                ttl=self._settings.mpack_cache_ttl,
            )
        except top_ups.PartGone:
            await session.rollback()
            return None  # the base went meanwhile: the staged steps plan again
        steps["record"] = time.perf_counter() - mark
        mark = time.perf_counter()
        await session.commit()
        steps["commit"] = time.perf_counter() - mark
        BUILD_SECONDS.labels(path="prebuild").observe(time.perf_counter() - started)
        BUILD_BYTES.labels(path="prebuild").inc(built.digest.size)
        return CheckCacheResult(
            "built",
            "a top-up of what was pushed",
            cache_id=cache_id,
            compact=needs_compaction(chain, self._settings),
        )

    async def _hold_stored(self, session: AsyncSession, key: str, size: int) -> None:
        """Hold the pack object until the caller commits, if it is still stored whole."""
        with _part_gone():
            await top_ups.hold_stored(session, self._storage, key, size)

    async def _record_chain(
        self, session: AsyncSession, pack: RecordCacheInput
    ) -> tuple[str, Chain]:
        """The new pack as a part, and the want set's chain: the base's chain plus this part
        (or this part alone, a base). A base chain gone since the plan (expired, lost) means
        the top-up has nothing to stand on: the build starts over and finds another base."""
        digest = PackDigest(pack.size, pack.sha256, tuple(SectionSpan(*s) for s in pack.sections))
        with _part_gone():
            return await top_ups.record_top_up(
                session,
                self._storage,
                repo_id=pack.repo_id,
                want=pack.want,
                base_want=pack.base_want,
                mpack_id=pack.mpack_id,
                digest=digest,
                ttl=self._settings.mpack_cache_ttl,
            )

    async def _cached(self, session: AsyncSession, target: CheckCacheInput) -> bool:
        """A live row whose pack is still in storage; a row whose pack storage lost does not
        count (it is dropped, and the pack built again)."""
        entry = await mpack_cache.lookup(session, target.repo_id, target.want)
        if entry is None:
            return False
        keys = [(p.mpack_id, p.size) for p in entry.chain.parts] if entry.chain else []
        if entry.mpack_id is not None:
            keys.append((entry.mpack_id, entry.size_bytes))
        # Every part at once (one storage round trip, whatever the chain's length); only a part
        # that looks gone is looked at again under its lock.
        sizes = await asyncio.gather(*(self._storage.size(key) for key, _ in keys))
        for (key, size), stored in zip(keys, sizes, strict=True):
            if stored != size and not await still_stored(
                session, self._storage, repo_id=target.repo_id, mpack_id=key, size_bytes=size
            ):
                return False
        return True

    async def _load_blobs(self, step: BuildStepInput) -> LoadBlobsResult:
        async with Heartbeat() as heartbeat:
            plan, _ = await self._plan(step)
            staged = await self._staging.stage(
                step.build_id,
                plan.objects,
                concurrency=self._settings.storage.read_concurrency,
                on_progress=heartbeat,
            )
        return LoadBlobsResult(staged.objects, staged.bytes, staged.reused)

    async def _assemble(self, step: BuildStepInput) -> AssembleResult:
        started = time.perf_counter()
        read_blob = self._staging.blob_reader(step.build_id, storage_blob_reader(self._storage))
        async with self._sessions() as session, Heartbeat() as heartbeat:
            plan, base_want = await self._plan(step)
            with self._staging.write_pack(step.build_id) as out:
                digest = await assemble_mpack(
                    session,
                    plan,
                    out,
                    read_blob,
                    concurrency=self._settings.storage.read_concurrency,
                    on_progress=heartbeat,
                )
            # What the part holds, under the key its upload gets (its content's), for the
            # top-ups after it to leave out.
            key = mpack_key(step.repo_id, digest.sha256)
            await top_ups.record_held(session, step.repo_id, key, plan)
            await session.commit()
        BUILD_SECONDS.labels(path="prebuild").observe(time.perf_counter() - started)
        BUILD_BYTES.labels(path="prebuild").inc(digest.size)
        return AssembleResult(
            digest.size,
            digest.sha256,
            len(plan.commit_ids),
            len(plan.objects),
            sections=[[span.count, span.start, span.end] for span in digest.sections],
            base_want=base_want,
        )

    async def _uploaded_earlier(self, built: UploadInput) -> str:
        """The key of a pack an earlier attempt uploaded before it lost the answer (its upload
        removed the staged pack); without one, the build has to start over."""
        key = mpack_key(built.repo_id, built.sha256)
        if await self._storage.size(key) == built.size:
            return key
        raise business_error("the assembled pack is not on this worker any more", STAGING_LOST)

    async def _discard(self, build_id: str) -> bool:
        self._plans.pop(build_id, None)
        return await self._staging.discard(build_id)

    async def _plan(self, step: BuildStepInput) -> tuple[FetchPlan, list[str]]:
        """What to build, and the want set whose chain it tops up (empty: a base). When a live
        chain's position is an ancestor of `want`, only what `want` adds to it is built: a push
        costs what it changed. Planned once per build: the load step keeps the plan in this
        worker's memory for the assemble step, which runs here too (this worker's own queue);
        the plan never changes, commits being immutable. A worker that restarts gets a new
        queue, and the build starts over with a new id, so the plan never outlives the
        process."""
        kept = self._plans.get(step.build_id)
        if kept is not None:
            return kept
        async with self._sessions() as session:
            try:
                plan, base_want = await top_ups.plan_top_up(
                    session,
                    step.repo_id,
                    step.want,
                    compact_parts=self._settings.mpack.chain_compact_parts,
                    fresh_base=step.fresh_base,
                )
            except NotFound as exc:
                raise business_error(exc.message, TIP_GONE) from None
        self._plans[step.build_id] = (plan, base_want)
        while len(self._plans) > KEPT_PLANS:  # builds whose workflow never came back
            self._plans.popitem(last=False)
        return plan, base_want


@contextmanager
def _part_gone() -> Iterator[None]:
    """A pack or chain gone from under the record step: a business error, the build starts
    over."""
    try:
        yield
    except top_ups.PartGone as exc:
        raise business_error(str(exc), PACK_GONE) from None
