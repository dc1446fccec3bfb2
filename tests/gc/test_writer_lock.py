"""GC never deletes a pack between a writer finding (or uploading) it and committing the row
that names it: both sides take the object's advisory lock, and a prebuild that finds its pack
collected before it could record it starts the build over."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.exceptions import ApplicationError

from activities.prebuild import PrebuildActivities
from musehub.contract import PACK_GONE, RecordCacheInput
from musehub.db.engine import session_factory
from musehub.services import gc, mpack_cache
from musehub.services.keys import mpack_key
from musehub.services.staging import StagingArea
from tests.conftest import Hub
from tests.gc.helpers import DAY, commit_id, new_repo_id, put_pack, row_exists


async def test_gc_waits_for_the_writer_holding_the_pack_then_keeps_it(hub: Hub) -> None:
    repo_id = await new_repo_id(hub)
    content = b"found by a build, not yet recorded"
    key = await put_pack(hub.storage, repo_id, content)
    async with AsyncSession(hub.engine) as writer, AsyncSession(hub.engine) as collector:
        await mpack_cache.hold_mpack_object(writer, key)
        collecting = asyncio.create_task(gc.delete_if_unnamed(collector, hub.storage, key))
        await asyncio.sleep(0.3)
        assert not collecting.done()  # waiting for the writer's lock
        entry = await mpack_cache.record(
            writer,
            repo_id=repo_id,
            want=[commit_id()],
            mpack_id=key,
            size_bytes=len(content),
            sha256=hashlib.sha256(content).hexdigest(),
            commit_count=1,
            object_count=1,
            ttl=DAY,
        )
        await writer.commit()
        assert await collecting is None  # named now: kept
    assert await hub.storage.exists(key)
    assert await row_exists(hub, entry.cache_id)


async def test_recording_a_pack_that_was_collected_asks_for_a_fresh_build(
    hub: Hub, tmp_path: Path
) -> None:
    repo_id = await new_repo_id(hub)
    activities = PrebuildActivities(
        session_factory(hub.engine),
        hub.storage,
        hub.settings,
        staging=StagingArea(tmp_path, hub.storage),
        worker_task_queue="unused",
    )
    sha256 = hashlib.sha256(b"collected after upload").hexdigest()
    want = [commit_id()]
    with pytest.raises(ApplicationError) as failure:
        await activities.record_cache(
            RecordCacheInput(repo_id, want, mpack_key(repo_id, sha256), 22, sha256, 1, 1)
        )
    assert failure.value.type == PACK_GONE  # the workflow starts this build over
    async with AsyncSession(hub.engine) as session:
        assert await mpack_cache.lookup(session, repo_id, want) is None
