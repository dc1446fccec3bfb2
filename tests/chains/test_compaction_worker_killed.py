"""Compaction (issue 13, item 2) with its worker killed (SIGKILL) while it joins the parts: the
row keeps naming its old parts, all still stored, and the join runs again to the end."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from musehub.contract import COMPACT_WORKFLOW, CompactChainInput
from musehub.db.engine import session_factory
from musehub.services.chains import load_chain
from musehub.services.compaction import compact_chain
from tests.chains.test_compaction import chain_now, push_one_at_a_time, wait_for
from tests.conftest import Hub
from tests.prebuild.conftest import PrebuildHub, settings_with_fresh_queue
from tests.prebuild.test_worker_killed import start_slow_worker, wait_until

pytestmark = pytest.mark.local_storage_only("one host; a worker process on the local backend")

# The doomed worker compacts a 4-part chain as `small_chains` would: joining its three older
# parts (the last one kept), every range read of them taking 1.5 s.
SMALL_CHAINS = {
    "MUSEHUB_MPACK_CHAIN_COMPACT_PARTS": "3",
    "MUSEHUB_MPACK_CHAIN_KEEP_PARTS": "1",
    "MUSEHUB_MPACK_CHAIN_COMPACT_RATIO": "1e9",
}


async def joining(handle: WorkflowHandle[object, object]) -> bool:
    """Whether the compaction activity has been taken by a worker (it is then reading parts)."""
    pending = (await handle.describe()).raw_description.pending_activities
    return any(a.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED for a in pending)


async def rows_name_only_stored_parts(hub: Hub, repo_id: str) -> None:
    async with AsyncSession(hub.engine) as session:
        query = text("SELECT cache_id FROM musehub_fetch_mpack_cache WHERE repo_id = :r")
        cache_ids = (await session.execute(query, {"r": repo_id})).scalars().all()
        for cache_id in cache_ids:
            chain = await load_chain(session, cache_id)
            for part in chain.parts if chain is not None else ():
                assert await hub.storage.size(part.mpack_id) == part.size, (cache_id, part)


async def test_a_worker_killed_mid_compaction_leaves_every_row_whole(
    small_chains: PrebuildHub, temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    hub = small_chains
    limits = hub.settings.mpack
    limits.chain_compact_parts = 99  # the chain grows uncompacted on the test's own worker
    repo_id, tips = await push_one_at_a_time(hub, 4)
    want = [tips[-1]]
    before = await wait_for(hub, repo_id, want, 99)
    assert len(before.parts) == 4

    settings = settings_with_fresh_queue(hub.settings)
    log = tmp_path / "doomed-worker.log"
    doomed = start_slow_worker(
        hub,
        temporal_env,
        settings.temporal.prebuild_task_queue,
        log,
        SMALL_CHAINS,
    )
    handle: WorkflowHandle[object, object] | None = None
    try:
        await wait_until(lambda: b"worker polling" in log.read_bytes(), 30, "the worker to poll")
        handle = await temporal_env.client.start_workflow(
            COMPACT_WORKFLOW,
            CompactChainInput(repo_id, want),
            id=f"compact-killed-{uuid.uuid4().hex[:8]}",
            task_queue=settings.temporal.prebuild_task_queue,  # where the prebuild starts it
        )
        deadline = time.monotonic() + 30
        while not await joining(handle):
            assert time.monotonic() < deadline, "the doomed worker never took the compaction"
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # into the join: its first range read alone takes 1.5 s
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(10)
    finally:
        if doomed.poll() is None:
            doomed.kill()
        if handle is not None:
            await handle.terminate("the test is done with it")  # its retry would wait a minute

    assert b"compacted chain" not in log.read_bytes()  # killed before the relink
    assert await chain_now(hub, repo_id, want) == before
    await rows_name_only_stored_parts(hub, repo_id)

    limits.chain_compact_parts = 3
    result = await compact_chain(
        session_factory(hub.engine), hub.storage, hub.settings, repo_id, want
    )
    assert (result.parts_before, result.parts_after) == (4, 3)
    await rows_name_only_stored_parts(hub, repo_id)
