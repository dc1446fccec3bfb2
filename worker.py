"""The Temporal worker: the prebuild workflow and its activities, with their database and
storage dependencies injected. `python -m worker` runs it; `musehub dev` starts it too.

Two queues: the shared prebuild queue (workflows and the steps any worker can run) and a queue
only this process polls, where the build steps that hand local files to each other run."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from activities.prebuild import PrebuildActivities
from musehub.db.engine import create_engine, session_factory
from musehub.logs import configure_logging
from musehub.settings import Settings, load_settings
from musehub.storage import ObjectStorage, build_storage
from musehub.temporal import connect
from workflows.prebuild import PrebuildFetchMPacks

log = logging.getLogger("musehub.worker")
WORKFLOWS = [PrebuildFetchMPacks]
# On shutdown, running activities get this long to finish before they are cancelled.
_GRACE = timedelta(seconds=30)


def worker_task_queue(settings: Settings) -> str:
    return f"{settings.temporal.prebuild_task_queue}/{socket.gethostname()}-{uuid.uuid4().hex[:8]}"


@asynccontextmanager
async def running_workers(
    client: Client, settings: Settings, *, storage: ObjectStorage | None = None,
    database_url: str | None = None,
) -> AsyncIterator[PrebuildActivities]:
    """Run the workers until the context exits; shutdown lets running activities finish."""
    engine = create_engine(database_url or settings.database_url,
                           pool_size=settings.database.pool_size)
    own_storage = storage is None
    storage = storage or build_storage(settings)
    own_queue = worker_task_queue(settings)
    activities = PrebuildActivities(session_factory(engine), storage, settings,
                                    worker_task_queue=own_queue)
    shared = Worker(
        client,
        task_queue=settings.temporal.prebuild_task_queue,
        workflows=WORKFLOWS,
        activities=[activities.check_cache, activities.claim_worker, activities.record_cache],
        graceful_shutdown_timeout=_GRACE,
    )
    local = Worker(
        client,
        task_queue=own_queue,
        activities=[activities.load_blobs, activities.assemble, activities.upload,
                    activities.discard],
        max_concurrent_activities=4,
        graceful_shutdown_timeout=_GRACE,
    )
    try:
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(shared)
            await stack.enter_async_context(local)
            yield activities
    finally:
        if own_storage:
            await storage.aclose()
        await engine.dispose()


async def main() -> None:
    configure_logging()
    settings = load_settings()
    client = await connect(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with running_workers(client, settings):
        log.info("worker polling %s (namespace %s)", settings.temporal.prebuild_task_queue,
                 settings.temporal.namespace)
        await stop.wait()
        log.info("worker stopping: letting running activities finish")

if __name__ == "__main__":
    asyncio.run(main())
