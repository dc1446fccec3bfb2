"""Record real workflow histories for the replay test (tests/replay/test_replay.py).

    .venv/bin/python -m tests.replay.record

runs the scenarios below against the session's real PostgreSQL, local storage and Temporal dev
server (the fixtures of tests/conftest.py), with the worker of `worker.py`, and writes each
run's history to `tests/replay/histories/<name>.json` (`WorkflowHistory.to_json()`, the format
`temporal workflow show --output json` writes). A history already recorded is kept (its
scenario is skipped): it is what code already deployed wrote, and later code must keep
replaying it. After a workflow change, add a scenario under a new name so the next change is
checked against the new code's histories too; `MUSEHUB_RECORD_OVERWRITE=1` re-records all.

This file is not collected by the suite (it is not `test_*.py`); `main` runs pytest on it."""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from musehub.contract import (
    PREBUILD_WORKFLOW,
    REBUILD_SIGNAL,
    STATUS_QUERY,
    TIPS_PUSHED_SIGNAL,
    CompactChainResult,
    GcInput,
    GcResult,
    PrebuildInput,
    PrebuildRequest,
    PrebuildResult,
    PrebuildStatus,
    compaction_workflow_id,
    prebuild_workflow_id,
)
from musehub.services import mpack_cache
from tests.chains.history import History
from tests.chains.test_chain_records import repo_id_of as repo_id_in
from tests.conftest import Hub
from tests.gc.helpers import DAY, age, cache_row, new_repo_id, put_pack
from tests.gc.test_schedule import make_oldest_push
from tests.mpack.helpers import VECTOR_HEADS
from tests.prebuild.conftest import settings_with_fresh_queue
from tests.prebuild.test_prebuild_workflow import A, B, C, D, FakeStore
from tests.wire.helpers import push_vector
from worker import running_workers
from workflows.gc import GarbageCollectFetchMPacks
from workflows.prebuild import PrebuildFetchMPacks

HISTORIES = Path(__file__).with_name("histories")
RECORD_ENV = "MUSEHUB_RECORD_HISTORIES"
OVERWRITE_ENV = "MUSEHUB_RECORD_OVERWRITE"
MAIN, CHORUS = VECTOR_HEADS["main"], VECTOR_HEADS["chorus"]

pytestmark = pytest.mark.skipif(
    not os.environ.get(RECORD_ENV), reason=f"records histories only with {RECORD_ENV}=1"
)


def new_history(name: str) -> Path:
    """Where the scenario `name` is recorded; skips it when recorded already."""
    path = HISTORIES / f"{name}.json"
    if path.exists() and not os.environ.get(OVERWRITE_ENV):
        pytest.skip(f"{path.name} is recorded already (set {OVERWRITE_ENV}=1 to re-record)")
    return path


async def save(handle: WorkflowHandle, path: Path) -> None:
    history = await handle.fetch_history()
    await asyncio.to_thread(path.write_text, history.to_json() + "\n")


async def start_prebuild(
    client: Client, task_queue: str, repo_id: str, tips: list[str], idle_seconds: float
) -> WorkflowHandle:
    """What a push does (`request_prebuild`), with a short idle wait so the run completes."""
    return await client.start_workflow(
        PREBUILD_WORKFLOW,
        PrebuildInput(repo_id=repo_id, repo_name="record/replay", idle_seconds=idle_seconds),
        id=prebuild_workflow_id(repo_id),
        task_queue=task_queue,
        start_signal=TIPS_PUSHED_SIGNAL,
        start_signal_args=[PrebuildRequest(sorted(tips))],
        execution_timeout=timedelta(minutes=5),
        result_type=PrebuildResult,
    )


async def until(condition: Callable[[], Awaitable[bool]], within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while not await condition():
        assert time.monotonic() < deadline, "the recorded run did not get there in time"
        await asyncio.sleep(0.1)


async def test_record_prebuild_of_a_push_of_two_branches(
    hub: Hub, temporal_env: WorkflowEnvironment
) -> None:
    """Real activities: the head set, then each tip, built and recorded."""
    path = new_history("prebuild_push_two_branches")
    settings = settings_with_fresh_queue(hub.settings)
    repo_id = (await push_vector(hub, branches=("main", "chorus"))).repo_id
    async with running_workers(
        temporal_env.client,
        settings,
        storage=hub.storage,
        database_url=hub.engine.url.render_as_string(False),
    ):
        handle = await start_prebuild(
            temporal_env.client, settings.temporal.prebuild_task_queue, repo_id, [MAIN, CHORUS], 1
        )
        result = await handle.result()
    assert (result.targets, result.built) == (3, 3)
    await save(handle, path)


async def test_record_prebuild_with_zstd_copies(
    hub: Hub, temporal_env: WorkflowEnvironment
) -> None:
    """Real activities, with the zstd copies made after each record step (workflow.patched
    "zstd-copies-at-prebuild"): the head set and each tip of a push of two branches."""
    path = new_history("prebuild_with_zstd_copies")
    settings = settings_with_fresh_queue(hub.settings)
    repo_id = (await push_vector(hub, branches=("main", "chorus"))).repo_id
    async with running_workers(
        temporal_env.client,
        settings,
        storage=hub.storage,
        database_url=hub.engine.url.render_as_string(False),
    ):
        handle = await start_prebuild(
            temporal_env.client, settings.temporal.prebuild_task_queue, repo_id, [MAIN, CHORUS], 1
        )
        result = await handle.result()
    assert (result.targets, result.built) == (3, 3)
    history = await handle.fetch_history()
    copies = [
        e
        for e in history.events
        if e.activity_task_scheduled_event_attributes.activity_type.name
        == "make_fetch_mpack_zstd_copies"
    ]
    assert len(copies) == 3
    await save(handle, path)


async def test_record_prebuild_with_rebuild_signals(
    hub: Hub, temporal_env: WorkflowEnvironment
) -> None:
    """Real activities: a push's builds, a plain rebuild (every pack fresh), a forced one."""
    path = new_history("prebuild_rebuild_signals")
    settings = settings_with_fresh_queue(hub.settings)
    repo_id = (await push_vector(hub, branches=("main", "chorus"))).repo_id
    async with running_workers(
        temporal_env.client,
        settings,
        storage=hub.storage,
        database_url=hub.engine.url.render_as_string(False),
    ):
        handle = await start_prebuild(
            temporal_env.client, settings.temporal.prebuild_task_queue, repo_id, [MAIN, CHORUS], 5
        )

        def done(count: int) -> Callable[[], Awaitable[bool]]:
            async def check() -> bool:
                status = await handle.query(STATUS_QUERY, result_type=PrebuildStatus)
                return status.done >= count

            return check

        await until(done(3))
        await handle.signal(REBUILD_SIGNAL, PrebuildRequest([MAIN, CHORUS]))
        await until(done(6))
        await handle.signal(REBUILD_SIGNAL, PrebuildRequest([MAIN, CHORUS], force=True))
        result = await handle.result()
    assert (result.targets, result.hits, result.built) == (9, 3, 6)
    await save(handle, path)


async def test_record_prebuild_superseded_restarted_and_failed_builds(
    temporal_env: WorkflowEnvironment,
) -> None:
    """Fake activities (tests/prebuild/test_prebuild_workflow.py) for the paths real ones hit
    only by bad luck: a lost staging folder (the build starts over), newer tips replacing
    targets not yet started, a superseded build, a missing blob, a gone tip, a forced rebuild
    of a target in flight."""
    path = new_history("prebuild_superseded_restarted_failed")
    store = FakeStore(f"record-{uuid.uuid4().hex[:8]}")
    store.lose_staging_once.add((A, B))
    store.slow.update({(A,), (B,)})
    store.superseded.add((D,))
    store.missing_blob_for.add((B,))
    store.gone.add(C)
    client = temporal_env.client
    async with Worker(
        client,
        task_queue=store.queue,
        workflows=[PrebuildFetchMPacks],
        activities=store.activities(),
    ):
        handle = await start_prebuild(client, store.queue, f"record-{uuid.uuid4()}", [A, B], 3)

        async def both_slots_busy() -> bool:
            return len(store.loads) >= 4  # the head set twice (staging lost), then A and B

        await until(both_slots_busy)
        await handle.signal(TIPS_PUSHED_SIGNAL, PrebuildRequest([A, C, D]))
        await asyncio.sleep(1)  # B's slot takes them: C is gone, D superseded
        await handle.signal(REBUILD_SIGNAL, PrebuildRequest([A], force=True))
        await asyncio.sleep(0.5)
        store.release.set()
        result = await handle.result()
    # Built: the head set (after a restart), A, A again (forced); skipped: B (blob missing),
    # the new head set and C (gone), D (superseded).
    assert (result.targets, result.built, result.skipped) == (7, 3, 4)
    await save(handle, path)


async def test_record_prebuild_of_a_chain_and_its_compaction(
    hub: Hub, temporal_env: WorkflowEnvironment
) -> None:
    """Real activities: four one-commit pushes, each a top-up of the chain before it; the fourth
    passes the compaction bound (3 parts), so the run starts CompactMPackChain, recorded too."""
    prebuild_path = new_history("prebuild_chain_top_ups_and_compaction")
    compaction_path = new_history("compaction_of_a_chain")
    settings = settings_with_fresh_queue(hub.settings)
    settings.mpack.chain_compact_parts, settings.mpack.chain_keep_parts = 3, 1
    settings.mpack.chain_compact_ratio = 1e9  # by the count of parts only
    owner, slug, token = await hub.create_repo()
    history = History()
    tips = [history.commit([], {"a": b"0" * 10_000})]
    await history.push(hub, owner, slug, token, "main", tips[-1])
    repo_id = await repo_id_of(hub, owner, slug)
    async with running_workers(
        temporal_env.client,
        settings,
        storage=hub.storage,
        database_url=hub.engine.url.render_as_string(False),
    ):
        handle = await start_prebuild(
            temporal_env.client, settings.temporal.prebuild_task_queue, repo_id, tips, 3
        )
        for n in range(1, 4):
            await until(lambda: chained(hub, repo_id, tips[-1]))
            tips.append(history.commit([tips[-1]], {"a": bytes([n]) * 10_000}))
            await history.push(hub, owner, slug, token, "main", tips[-1])
            await handle.signal(TIPS_PUSHED_SIGNAL, PrebuildRequest([tips[-1]]))
        await handle.result()
        cache_id = mpack_cache.cache_id_for(repo_id, [tips[-1]])
        compaction = temporal_env.client.get_workflow_handle(
            compaction_workflow_id(cache_id), result_type=CompactChainResult
        )
        result = await compaction.result()
    assert (result.parts_before, result.parts_after) == (4, 3)
    await save(handle, prebuild_path)
    await save(compaction, compaction_path)


async def test_record_prebuild_of_quick_top_ups_and_a_forced_base(
    hub: Hub, temporal_env: WorkflowEnvironment
) -> None:
    """Real activities, with quick top-ups (workflow.patched "quick-top-up"): a base for two
    branches, a one-commit push to each built by the cache check itself (four slots), then a
    forced rebuild that makes new bases through the staged steps."""
    path = new_history("prebuild_quick_top_ups_and_forced_base")
    settings = settings_with_fresh_queue(hub.settings)
    owner, slug, token = await hub.create_repo()
    history = History()
    root = history.commit([], {"a": b"0" * 10_000})
    tips = {"main": root, "side": history.commit([root], {"a": b"s" * 10_000})}
    for branch, tip in tips.items():
        await history.push(hub, owner, slug, token, branch, tip)
    repo_id = await repo_id_of(hub, owner, slug)
    async with running_workers(
        temporal_env.client,
        settings,
        storage=hub.storage,
        database_url=hub.engine.url.render_as_string(False),
    ):
        handle = await start_prebuild(
            temporal_env.client,
            settings.temporal.prebuild_task_queue,
            repo_id,
            list(tips.values()),
            3,
        )
        for n, branch in enumerate(("main", "side")):
            tip = tips[branch]
            await until(lambda: chained(hub, repo_id, tip))  # noqa: B023 (awaited here)
            tips[branch] = history.commit([tips[branch]], {"a": bytes([n]) * 10_000})
            await history.push(hub, owner, slug, token, branch, tips[branch])
            await handle.signal(TIPS_PUSHED_SIGNAL, PrebuildRequest(sorted(tips.values())))
        await until(lambda: chained(hub, repo_id, tips["side"]))
        await handle.signal(REBUILD_SIGNAL, PrebuildRequest(sorted(tips.values()), force=True))
        result = await handle.result()
    assert result.built >= 3 + 2 + 3  # 3 bases, a top-up per push or more, 3 forced bases
    async with AsyncSession(hub.engine) as session:
        entry = await mpack_cache.lookup(session, repo_id, [tips["main"]])
    assert entry is not None and entry.chain is not None and len(entry.chain.parts) == 1
    await save(handle, path)


async def test_record_prebuild_of_tips_beside_the_head_set_check(
    hub: Hub, temporal_env: WorkflowEnvironment
) -> None:
    """Real activities, with the tips' checks started beside the head set's (workflow.patched
    "tips-beside-head-set-check"): a base for two branches, then a one-commit push to each, the
    head set's and the tip's top-ups built by their cache checks at once."""
    await record_tips_beside_the_head_set_check(
        hub, temporal_env, "prebuild_tips_beside_head_set_check"
    )


async def test_record_prebuild_of_tips_beside_the_head_set_check_with_zstd_copies(
    hub: Hub, temporal_env: WorkflowEnvironment
) -> None:
    """The same scenario once both "tips-beside-head-set-check" and "zstd-copies-at-prebuild"
    were in one workflow (each was first recorded without the other)."""
    await record_tips_beside_the_head_set_check(
        hub, temporal_env, "prebuild_tips_beside_head_set_check_with_zstd_copies"
    )


async def record_tips_beside_the_head_set_check(
    hub: Hub, temporal_env: WorkflowEnvironment, name: str
) -> None:
    path = new_history(name)
    settings = settings_with_fresh_queue(hub.settings)
    owner, slug, token = await hub.create_repo()
    history = History()
    root = history.commit([], {"a": b"0" * 10_000})
    tips = {"main": root, "side": history.commit([root], {"a": b"s" * 10_000})}
    for branch, tip in tips.items():
        await history.push(hub, owner, slug, token, branch, tip)
    repo_id = await repo_id_of(hub, owner, slug)
    async with running_workers(
        temporal_env.client,
        settings,
        storage=hub.storage,
        database_url=hub.engine.url.render_as_string(False),
    ):
        handle = await start_prebuild(
            temporal_env.client,
            settings.temporal.prebuild_task_queue,
            repo_id,
            list(tips.values()),
            3,
        )
        for n, branch in enumerate(("main", "side")):
            tip = tips[branch]
            await until(lambda: chained(hub, repo_id, tip))  # noqa: B023 (awaited here)
            tips[branch] = history.commit([tips[branch]], {"a": bytes([n]) * 10_000})
            await history.push(hub, owner, slug, token, branch, tips[branch])
            await handle.signal(TIPS_PUSHED_SIGNAL, PrebuildRequest(sorted(tips.values())))
        await until(lambda: chained(hub, repo_id, tips["side"]))
        result = await handle.result()
    assert result.built >= 3 + 2
    async with AsyncSession(hub.engine) as session:
        entry = await mpack_cache.lookup(session, repo_id, sorted(tips.values()))
    assert entry is not None and entry.chain is not None and len(entry.chain.parts) >= 2
    await save(handle, path)


async def repo_id_of(hub: Hub, owner: str, slug: str) -> str:
    async with AsyncSession(hub.engine) as session:
        return await repo_id_in(session, owner, slug)


async def chained(hub: Hub, repo_id: str, tip: str) -> bool:
    async with AsyncSession(hub.engine) as session:
        entry = await mpack_cache.lookup(session, repo_id, [tip])
    return entry is not None and entry.chain is not None


async def test_record_gc_run(hub: Hub, temporal_env: WorkflowEnvironment) -> None:
    """Real activities, as GC ran before its verify step: expired rows in two batches and their
    objects, an orphan and a stale upload swept, a repo pushed without packs reconciled."""
    path = new_history("gc_run")
    await record_gc(hub, temporal_env, path, lost_pack=False)


async def test_record_gc_run_with_verify(hub: Hub, temporal_env: WorkflowEnvironment) -> None:
    """The same with the verify step (workflow.patched "gc-verify-live-packs"), which drops
    the row of a pack storage lost."""
    path = new_history("gc_run_with_verify")
    result = await record_gc(hub, temporal_env, path, lost_pack=True)
    assert result.packs_verified >= 1 and result.lost_packs >= 1


async def record_gc(
    hub: Hub, temporal_env: WorkflowEnvironment, path: Path, *, lost_pack: bool
) -> GcResult:
    settings = settings_with_fresh_queue(hub.settings)
    repo_id = await new_repo_id(hub)
    for content in (b"expired pack one", b"expired pack two"):
        key = await put_pack(hub.storage, repo_id, content)
        await cache_row(hub, repo_id, key, expires_in=-timedelta(minutes=1))
    if lost_pack:
        lost = await put_pack(hub.storage, repo_id, b"a live row's pack, lost")
        await cache_row(hub, repo_id, lost)
        await hub.storage.delete(lost)
    orphan = await put_pack(hub.storage, repo_id, b"orphan pack")
    age(hub.storage, orphan, 2 * DAY)
    upload = f"uploads/{repo_id}/{'e' * 64}"
    await hub.storage.put(upload, b"a presigned upload nobody pushed")
    age(hub.storage, upload, 2 * DAY)
    unbuilt = (await push_vector(hub, branches=("main", "chorus"))).repo_id
    await make_oldest_push(hub, unbuilt)
    async with running_workers(
        temporal_env.client,
        settings,
        storage=hub.storage,
        database_url=hub.engine.url.render_as_string(False),
    ):
        handle = await temporal_env.client.start_workflow(
            GarbageCollectFetchMPacks.run,
            GcInput(
                batch_size=1,
                max_batches=5,
                orphan_grace_seconds=DAY.total_seconds(),
                reconcile_max_repos=1,
            ),
            id=f"record-gc-{uuid.uuid4().hex[:8]}",
            task_queue=settings.temporal.task_queue,
        )
        result = await handle.result()
    assert result.errors == [] and result.rows_deleted >= 2 and result.orphans_swept >= 1
    assert result.repos_reconciled == 1
    await save(handle, path)
    return result


def main() -> int:
    os.environ[RECORD_ENV] = "1"
    return pytest.main([__file__, "-q", "-p", "no:cacheprovider", *sys.argv[1:]])


if __name__ == "__main__":
    raise SystemExit(main())
