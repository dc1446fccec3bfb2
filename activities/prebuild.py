"""The prebuild steps as activities: the only place the prebuild workflow touches the database
and object storage. Each step calls the same build code the synchronous fetch uses."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from collections import OrderedDict
from collections.abc import Awaitable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from musehub.contract import (
    BAD_BUILD_ID,
    BLOB_MISSING,
    BUILD_STEP_TIMEOUT,
    PACK_GONE,
    STAGING_LOST,
    SUPERSEDED,
    TIP_GONE,
    AssembleResult,
    BuildStepInput,
    CheckCacheInput,
    CheckCacheResult,
    ClaimWorkerInput,
    ClaimWorkerResult,
    DiscardBuildInput,
    DiscardBuildResult,
    ErrorType,
    LoadBlobsResult,
    RecordCacheInput,
    RecordCacheResult,
    UploadInput,
    UploadResult,
    build_targets,
)
from musehub.metrics import BUILD_BYTES, BUILD_SECONDS, PREBUILD_QUEUE_DELAY
from musehub.mpack.writer import PackDigest
from musehub.services import history, mpack_cache
from musehub.services.errors import NotFound
from musehub.services.keys import mpack_key
from musehub.services.mpack_build import (
    BlobMissing,
    FetchPlan,
    PackObject,
    assemble_mpack,
    plan_fetch,
    storage_blob_reader,
    upload_mpack,
)
from musehub.services.repos import branch_heads
from musehub.settings import Settings
from musehub.storage import ObjectNotFound, ObjectStorage

T = TypeVar("T")
HEARTBEAT_EVERY_SECONDS = 1.0
SUPERSEDED_CHECK_SECONDS = 0.1
# A build step writes its staging folder as it goes: one untouched for twice the longest a step
# may run has no step left to come back.
STALE_STAGING_SECONDS = 2 * BUILD_STEP_TIMEOUT.total_seconds()
# Blobs this large are staged on the worker before assembling, so a retried build resumes
# instead of reading them again; smaller ones cost more as files than as reads, so assemble
# reads them straight from storage (64 at a time, like the synchronous build).
STAGE_MIN_BYTES = 1024 * 1024
PACK_FILE = "pack.mpack"
# Plans kept for builds between their load and assemble steps. A long history's plan is large,
# and losing one only costs its assemble step a second planning, so few are kept.
KEPT_PLANS = 8


def business_error(message: str, kind: ErrorType) -> ApplicationError:
    """A fact no retry changes (a blob that does not exist): fail now, not forever."""
    return ApplicationError(message, type=kind, non_retryable=True)


class Heartbeat:
    """Heartbeats every few seconds while a long step runs, with its latest progress: a live
    worker stays alive even inside one slow read, and a dead one is noticed within the
    heartbeat timeout."""

    def __init__(self, interval: float = HEARTBEAT_EVERY_SECONDS) -> None:
        self._interval = interval
        self._progress = {"done": 0, "total": 0}
        self._task: asyncio.Task[None] | None = None

    def __call__(self, done: int, total: int) -> None:
        self._progress = {"done": done, "total": total}

    async def __aenter__(self) -> Heartbeat:
        activity.heartbeat(self._progress)
        self._task = asyncio.create_task(self._beat())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            activity.heartbeat(self._progress)


class PrebuildActivities:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        storage: ObjectStorage,
        settings: Settings,
        *,
        worker_task_queue: str,
    ) -> None:
        self._sessions = sessions
        self._storage = storage
        self._settings = settings
        self._worker_task_queue = worker_task_queue
        self._plans: OrderedDict[str, FetchPlan] = OrderedDict()

    # -- on the shared prebuild queue ---------------------------------------------------------

    @activity.defn(name="check_fetch_mpack_cache")
    async def check_cache(self, request: CheckCacheInput) -> CheckCacheResult:
        async with self._sessions() as session:
            known = await history.existing_commit_ids(session, request.repo_id, request.want)
            gone = sorted(set(request.want) - known)
            if gone:
                return CheckCacheResult("gone", f"commit {gone[0]} is no longer in the repository")
            if not request.force and await mpack_cache.lookup(
                session, request.repo_id, request.want
            ):
                return CheckCacheResult("fresh", "a live pack already answers this want set")
        return CheckCacheResult("build", task_queue=self._worker_task_queue)

    @activity.defn(name="claim_build_worker")
    async def claim_worker(self, request: ClaimWorkerInput) -> ClaimWorkerResult:
        return ClaimWorkerResult(self._worker_task_queue)

    @activity.defn(name="record_fetch_mpack_cache")
    async def record_cache(self, request: RecordCacheInput) -> RecordCacheResult:
        async with self._sessions() as session:
            # GC may have collected an identical old pack the upload step found and kept; under
            # this lock GC waits, so a pack still there now stays until the row is committed.
            await mpack_cache.hold_mpack_object(session, request.mpack_id)
            if await self._storage.size(request.mpack_id) != request.size:
                raise ApplicationError(
                    f"pack {request.mpack_id} was collected before it was recorded",
                    type=PACK_GONE,
                    non_retryable=True,
                )
            entry = await mpack_cache.record(
                session,
                repo_id=request.repo_id,
                want=request.want,
                mpack_id=request.mpack_id,
                size_bytes=request.size,
                sha256=request.sha256,
                commit_count=request.commits,
                object_count=request.objects,
                ttl=self._settings.mpack_cache_ttl,
            )
            await session.commit()
        return RecordCacheResult(entry.cache_id)

    # -- on this worker's own queue: the steps that hand local files to each other -----------

    @activity.defn(name="load_fetch_mpack_blobs")
    async def load_blobs(self, request: BuildStepInput) -> LoadBlobsResult:
        info = activity.info()
        PREBUILD_QUEUE_DELAY.observe(
            (info.started_time - info.current_attempt_scheduled_time).total_seconds()
        )
        return await unless_superseded(self._sessions, request, self._load_blobs(request))

    @activity.defn(name="assemble_fetch_mpack")
    async def assemble(self, request: BuildStepInput) -> AssembleResult:
        return await unless_superseded(self._sessions, request, self._assemble(request))

    async def _load_blobs(self, request: BuildStepInput) -> LoadBlobsResult:
        """Copy every large blob the pack needs into this worker's staging folder. Blobs already
        there from an earlier attempt are kept, so a retry resumes instead of starting over."""
        async with Heartbeat() as heartbeat:
            plan = await self._plan(request)
            staging = self._staging(request.build_id) / "objects"
            staging.mkdir(parents=True, exist_ok=True)
            large = [o for o in plan.objects if o.size >= STAGE_MIN_BYTES]
            todo = [o for o in large if not _staged(staging, o)]
            limit = asyncio.Semaphore(self._settings.storage.read_concurrency)
            done = len(large) - len(todo)

            async def fetch(obj: PackObject) -> None:
                nonlocal done
                async with limit:
                    await self._download(obj, staging)
                done += 1
                heartbeat(done, len(large))

            await asyncio.gather(*(fetch(o) for o in todo))
        staged_bytes = sum(o.size for o in large)
        return LoadBlobsResult(len(large), staged_bytes, len(large) - len(todo))

    async def _assemble(self, request: BuildStepInput) -> AssembleResult:
        started = time.perf_counter()
        folder = self._staging(request.build_id)
        objects = folder / "objects"

        from_storage = storage_blob_reader(self._storage)

        async def read_staged(obj: PackObject) -> bytes:
            if obj.size < STAGE_MIN_BYTES:
                return await from_storage(obj)
            try:
                return await asyncio.to_thread((objects / obj.object_id).read_bytes)
            except FileNotFoundError:
                # This worker lost its staging folder (restarted elsewhere): start the build over.
                raise ApplicationError(
                    f"staged blob {obj.object_id} is gone", type=STAGING_LOST, non_retryable=True
                ) from None

        partial = folder / (PACK_FILE + ".partial")
        async with self._sessions() as session, Heartbeat() as heartbeat:
            plan = await self._plan(request)
            with partial.open("wb") as out:
                digest = await _as_business_error(
                    assemble_mpack(
                        session,
                        plan,
                        out,
                        read_staged,
                        concurrency=self._settings.storage.read_concurrency,
                        on_progress=heartbeat,
                    )
                )
                out.flush()
                os.fsync(out.fileno())
        partial.replace(folder / PACK_FILE)
        BUILD_SECONDS.labels(path="prebuild").observe(time.perf_counter() - started)
        BUILD_BYTES.labels(path="prebuild").inc(digest.size)
        return AssembleResult(digest.size, digest.sha256, len(plan.commit_ids), len(plan.objects))

    @activity.defn(name="upload_fetch_mpack")
    async def upload(self, request: UploadInput) -> UploadResult:
        """Upload the pack, then remove this build's staging folder (so a successful build needs
        no discard step)."""
        folder = self._staging(request.build_id)
        path = folder / PACK_FILE
        if not path.exists() or path.stat().st_size != request.size:
            key = mpack_key(request.repo_id, request.sha256)
            if await self._storage.size(key) == request.size:
                return UploadResult(key)  # an earlier attempt uploaded it, then lost the answer
            raise ApplicationError(
                "the assembled pack is not on this worker any more",
                type=STAGING_LOST,
                non_retryable=True,
            )
        async with Heartbeat():
            # The staging folder goes next: the backend may take the file instead of a copy.
            key = await upload_mpack(
                self._storage,
                request.repo_id,
                path,
                PackDigest(request.size, request.sha256),
                move=True,
            )
        await asyncio.to_thread(shutil.rmtree, folder, True)
        self._forget(request.build_id)
        return UploadResult(key)

    @activity.defn(name="discard_fetch_mpack_build")
    async def discard(self, request: DiscardBuildInput) -> DiscardBuildResult:
        folder = self._staging(request.build_id)
        existed = folder.exists()
        await asyncio.to_thread(shutil.rmtree, folder, True)
        self._forget(request.build_id)
        return DiscardBuildResult(existed)

    def sweep_stale_staging(self) -> int:
        """Remove the staging folders no build can come back for (a killed worker's): those
        where nothing was written for STALE_STAGING_SECONDS. Run at worker start, off the
        event loop. Returns how many were removed."""
        root = self._settings.work_dir / "prebuild"
        if not root.is_dir():
            return 0
        removed = 0
        for folder in root.iterdir():
            if time.time() - _last_written(folder) > STALE_STAGING_SECONDS:
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
        return removed

    # -- helpers ------------------------------------------------------------------------------

    async def _plan(self, request: BuildStepInput) -> FetchPlan:
        """Planned once per build: the load step keeps the plan in this worker's memory for the
        assemble step, which runs here too (this worker's own queue); a clone's plan never
        changes, commits being immutable. A worker that restarts gets a new queue, and the build
        starts over with a new id, so the plan never needs to outlive the process."""
        plan = self._plans.get(request.build_id)
        if plan is not None:
            return plan
        async with self._sessions() as session:
            try:
                plan = await _as_business_error(
                    plan_fetch(session, request.repo_id, request.want, [])
                )
            except NotFound as exc:
                raise business_error(exc.message, TIP_GONE) from None
        self._plans[request.build_id] = plan
        while len(self._plans) > KEPT_PLANS:  # builds whose workflow never came back
            self._plans.popitem(last=False)
        return plan

    def _forget(self, build_id: str) -> None:
        self._plans.pop(build_id, None)

    def _staging(self, build_id: str) -> Path:
        if not build_id.replace("-", "").isalnum():
            raise business_error(f"bad build id {build_id!r}", BAD_BUILD_ID)
        return self._settings.work_dir / "prebuild" / build_id

    async def _download(self, obj: PackObject, staging: Path) -> None:
        partial = staging / (obj.object_id + ".partial")
        try:
            with partial.open("wb") as out:
                async for chunk in self._storage.stream(obj.storage_key):
                    out.write(chunk)
        except ObjectNotFound:
            partial.unlink(missing_ok=True)
            raise business_error(
                f"object {obj.object_id} is missing from storage", BLOB_MISSING
            ) from None
        partial.replace(staging / obj.object_id)


async def unless_superseded(
    sessions: async_sessionmaker[AsyncSession],
    request: BuildStepInput,
    step: Coroutine[Any, Any, T],
) -> T:
    """Run a long build step, and stop it once a newer push has replaced its tips: the pack of
    tips that are no longer the repo's would answer no clone, and building it would delay the
    pack of the new ones. Checked here, on the worker, every SUPERSEDED_CHECK_SECONDS, because a
    cancel from the workflow reaches an activity only with its next heartbeat, and the SDK
    throttles those to most of the heartbeat timeout."""
    work = asyncio.ensure_future(step)
    try:
        while True:
            done, _ = await asyncio.wait({work}, timeout=SUPERSEDED_CHECK_SECONDS)
            if done:
                return work.result()
            if await _superseded(sessions, request):
                break
    finally:
        if not work.done():
            work.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await work
    raise business_error(
        f"tips {request.want} were replaced by a newer push before their pack was built",
        SUPERSEDED,
    )


async def _superseded(sessions: async_sessionmaker[AsyncSession], request: BuildStepInput) -> bool:
    async with sessions() as session:
        heads = await branch_heads(session, request.repo_id)
    return request.want not in build_targets(list(heads.values()))


def _last_written(folder: Path) -> float:
    try:
        return max(p.stat().st_mtime for p in [folder, *folder.rglob("*")])
    except OSError:  # removed meanwhile: by its own build, which is done with it
        return time.time()


def _staged(staging: Path, obj: PackObject) -> bool:
    try:
        return (staging / obj.object_id).stat().st_size == obj.size
    except FileNotFoundError:
        return False


async def _as_business_error(step: Awaitable[T]) -> T:
    try:
        return await step
    except BlobMissing as exc:
        raise business_error(str(exc), BLOB_MISSING) from None
