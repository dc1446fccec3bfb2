"""Issue 12, item 5, end to end: a cached pack that storage lost does not count as cached. A
plain rebuild (the `rebuild` signal without force, as `musehub rebuild` sends it, or the next
push's prebuild) drops the rows naming it and builds it again; so does a GC run (its verify step
drops the rows, its reconcile starts the build). Packs still in storage stay as they are."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime

from musehub.contract import REBUILD_SIGNAL, GcInput
from musehub.services.prebuild_trigger import request_prebuild
from tests.conftest import Hub
from tests.gc.test_schedule import make_oldest_push
from tests.prebuild.conftest import PrebuildHub, named_objects_stored
from tests.prebuild.test_prebuild_integration import BOTH, CHORUS, MAIN, cache_rows, wait_for_rows
from tests.wire.helpers import push_vector
from workflows.gc import GarbageCollectFetchMPacks

EVERY_PACK = 1_000_000  # the shared test database holds other tests' rows too

Row = tuple[str | None, int, datetime]  # mpack_id, size_bytes, created_at


async def rows_by_want(hub: Hub, repo_id: str) -> dict[tuple[str, ...], Row]:
    return {
        tuple(row.want_commit_ids): (row.mpack_id, row.size_bytes, row.created_at)
        for row in await cache_rows(hub, repo_id)
    }


async def test_a_plain_rebuild_builds_again_the_pack_storage_lost(
    prebuild_hub: PrebuildHub,
) -> None:
    _, _, _, repo_id = await push_vector(prebuild_hub, branches=BOTH)
    await wait_for_rows(prebuild_hub, repo_id, 3)
    before = await rows_by_want(prebuild_hub, repo_id)
    head_set = tuple(sorted([MAIN, CHORUS]))
    lost_key = before[head_set][0]
    assert lost_key is not None  # the head set, built first, is a base: one pack
    # Every row naming the lost object (here the head set's and chorus's: same bytes, one key).
    lost = {want for want, (key, _, _) in before.items() if key == lost_key}
    kept = set(before) - lost
    assert lost and kept
    await prebuild_hub.storage.delete(lost_key)

    assert prebuild_hub.temporal is not None
    await request_prebuild(
        prebuild_hub.temporal,
        prebuild_hub.settings,
        repo_id=repo_id,
        repo_name="lost/pack",
        tips=[MAIN, CHORUS],
        signal=REBUILD_SIGNAL,  # not forced
    )

    deadline = time.monotonic() + 30
    while True:
        after = await rows_by_want(prebuild_hub, repo_id)
        if all(want in after and after[want][2] > before[want][2] for want in lost):
            break
        assert time.monotonic() < deadline, f"the lost pack was not built again: {after}"
        await asyncio.sleep(0.1)
    for want in lost:  # every object the rebuilt row names is stored whole
        assert await named_objects_stored(prebuild_hub, repo_id, list(want))
    assert {want: after[want] for want in kept} == {want: before[want] for want in kept}


async def test_a_gc_run_drops_the_rows_of_a_lost_pack_and_reconcile_builds_it_again(
    prebuild_hub: PrebuildHub,
) -> None:
    _, _, _, repo_id = await push_vector(prebuild_hub, branches=BOTH)
    before = {row.cache_id: row for row in await wait_for_rows(prebuild_hub, repo_id, 3)}
    lost_key = next(row.mpack_id for row in before.values() if row.tip_commit_id is None)
    assert lost_key is not None  # the head set, built first, is a base: one pack
    lost = {cache_id for cache_id, row in before.items() if row.mpack_id == lost_key}
    await prebuild_hub.storage.delete(lost_key)
    await make_oldest_push(prebuild_hub, repo_id)  # reconcile takes this repo first

    assert prebuild_hub.temporal is not None
    result = await prebuild_hub.temporal.execute_workflow(
        GarbageCollectFetchMPacks.run,
        GcInput(reconcile_max_repos=1, verify_max_packs=EVERY_PACK),
        id=f"gc-test-{uuid.uuid4().hex[:8]}",
        task_queue=prebuild_hub.settings.temporal.task_queue,
    )

    assert result.errors == []
    assert result.packs_verified >= 2 and result.lost_packs >= 1
    assert result.repos_reconciled == 1
    deadline = time.monotonic() + 30
    while True:  # rebuilt by the prebuild reconcile started: new rows, the object back
        after = {row.cache_id: row for row in await cache_rows(prebuild_hub, repo_id)}
        if all(c in after and after[c].created_at > before[c].created_at for c in lost):
            break
        assert time.monotonic() < deadline, "the lost pack was not built again"
        await asyncio.sleep(0.1)
    for cache_id in lost:
        wanted = list(after[cache_id].want_commit_ids)
        assert await named_objects_stored(prebuild_hub, repo_id, wanted)
    for cache_id in set(before) - lost:  # a pack still stored is neither dropped nor rebuilt
        assert after[cache_id].created_at == before[cache_id].created_at
