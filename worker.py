"""The Temporal worker: the prebuild and garbage-collection workflows and their activities,
with their database, storage and Temporal dependencies injected. `musehub worker` runs it, as
`musehub dev` does (`python -m worker` still works). At start it creates (or updates) the GC
schedule and claims its own staging folder; at start and every few minutes it removes those of
workers that are gone (`musehub.services.staging`).

Three queues: the shared prebuild queue (workflows and the steps any worker can run), a queue
only this process polls, where the build steps that hand local files to each other run, and the
general queue, where garbage collection runs."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from pathlib import Path

from prometheus_client import start_http_server
from temporalio.client import Client
from temporalio.worker import Worker

from activities.compaction import CompactionActivities
from activities.gc import GcActivities
from activities.prebuild import PrebuildActivities
from musehub.db.engine import create_engine, session_factory
from musehub.logs import configure_logging
from musehub.metrics import process_started
from musehub.services.schedules import apply_gc_schedule
from musehub.services.staging import StagingArea, sweep_abandoned
from musehub.settings import Settings, load_settings
from musehub.storage import ObjectStorage, build_storage
from musehub.temporal import connect
from workflows.compaction import CompactMPackChain
from workflows.gc import GarbageCollectFetchMPacks
from workflows.prebuild import PrebuildFetchMPacks

log = logging.getLogger("musehub.worker")
WORKFLOWS = [PrebuildFetchMPacks, CompactMPackChain]
GENERAL_WORKFLOWS = [GarbageCollectFetchMPacks]
# On shutdown, running activities get this long to finish before they are cancelled.
_GRACE = timedelta(seconds=30)
STAGING_SWEEP_EVERY = timedelta(minutes=5)


def worker_task_queue(settings: Settings) -> str:
    return f"{settings.temporal.prebuild_task_queue}/{socket.gethostname()}-{uuid.uuid4().hex[:8]}"


@asynccontextmanager
async def running_workers(
    client: Client,
    settings: Settings,
    *,
    storage: ObjectStorage | None = None,
    database_url: str | None = None,
) -> AsyncIterator[PrebuildActivities]:
    """Run the workers until the context exits; shutdown lets running activities finish."""
    engine = create_engine(
        database_url or settings.database_url, pool_size=settings.database.pool_size
    )
    own_storage = storage is None
    storage = storage or build_storage(settings)
    own_queue = worker_task_queue(settings)
    sessions = session_factory(engine)
    staging_root = settings.work_dir / "prebuild"
    staging = await asyncio.to_thread(StagingArea.claim, staging_root, storage)
    activities = PrebuildActivities(
        sessions, storage, settings, staging=staging, worker_task_queue=own_queue
    )
    gc = GcActivities(sessions, storage, settings, client)
    compaction = CompactionActivities(sessions, storage, settings)
    shared = Worker(
        client,
        task_queue=settings.temporal.prebuild_task_queue,
        workflows=WORKFLOWS,
        activities=[
            activities.check_cache,
            activities.check_or_append,
            activities.claim_worker,
            activities.record_cache,
            activities.make_zstd_copies,
            compaction.compact,
        ],
        max_concurrent_activities=settings.temporal.worker_max_concurrent_activities,
        graceful_shutdown_timeout=_GRACE,
    )
    local = Worker(
        client,
        task_queue=own_queue,
        activities=[
            activities.load_blobs,
            activities.assemble,
            activities.upload,
            activities.discard,
        ],
        max_concurrent_activities=settings.temporal.worker_max_concurrent_builds,
        graceful_shutdown_timeout=_GRACE,
    )
    general = Worker(
        client,
        task_queue=settings.temporal.task_queue,
        workflows=GENERAL_WORKFLOWS,
        activities=[
            gc.delete_expired_rows,
            gc.delete_unnamed_mpacks,
            gc.verify_live_packs,
            gc.sweep_orphans,
            gc.sweep_uploads,
            gc.reconcile,
        ],
        max_concurrent_activities=settings.temporal.worker_max_concurrent_activities,
        graceful_shutdown_timeout=_GRACE,
    )
    await _sweep_staging(staging_root)
    sweeping = asyncio.create_task(_sweep_staging_periodically(staging_root))
    try:
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(shared)
            await stack.enter_async_context(local)
            await stack.enter_async_context(general)
            yield activities
    finally:
        sweeping.cancel()
        await asyncio.to_thread(staging.release)
        if own_storage:
            await storage.aclose()
        await engine.dispose()


async def _sweep_staging_periodically(root: Path) -> None:
    """Workers sharing a host sweep up after each other, not only when one starts."""
    while True:
        await asyncio.sleep(STAGING_SWEEP_EVERY.total_seconds())
        await _sweep_staging(root)


async def _sweep_staging(root: Path) -> None:
    """Remove the staging folders of workers that are gone: a killed one leaves its own."""
    try:
        swept = await asyncio.to_thread(sweep_abandoned, root)
    except OSError as exc:  # a full or failing disk: the next round tries again
        log.warning("staging sweep of %s failed: %s", root, exc)
        return
    if swept:
        log.info("removed %d staging folder(s) no live worker owns", swept)


async def main(settings: Settings | None = None) -> None:
    """Run until SIGINT or SIGTERM; `musehub worker` passes the settings its flags changed."""
    configure_logging()
    settings = settings or load_settings()
    client = await connect(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await _apply_schedules(client, settings)
    if settings.temporal.worker_metrics_port:
        start_http_server(
            settings.temporal.worker_metrics_port, addr=settings.temporal.worker_metrics_host
        )
    async with running_workers(client, settings):
        process_started("worker")
        log.info(
            "worker polling %s and %s (namespace %s)",
            settings.temporal.prebuild_task_queue,
            settings.temporal.task_queue,
            settings.temporal.namespace,
        )
        await stop.wait()
        log.info("worker stopping: letting running activities finish")


async def _apply_schedules(client: Client, settings: Settings) -> None:
    """Best effort: prebuilds must run even if the schedule cannot be written right now."""
    try:
        applied = await apply_gc_schedule(client, settings)
    except Exception as exc:  # any failure: log it, `musehub schedules apply` can fix it later
        log.error("GC schedule %s not applied: %s", settings.gc.schedule_id, exc)
        return
    log.info(
        "GC schedule %s %s: every %g min",
        applied.schedule_id,
        "created" if applied.created else "updated",
        settings.gc.interval_minutes,
    )


if __name__ == "__main__":
    asyncio.run(main())
