"""FMC_07: the workflow, with fake activities, writes a cache row per tip and skips fresh ones;
gone tips are skipped; a worker lost mid-build makes the build start over; a missing blob is
not retried forever."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from musehub.contract import (
    BLOB_MISSING,
    STAGING_LOST,
    SUPERSEDED,
    AssembleResult,
    BuildStepInput,
    CheckCacheInput,
    CheckCacheResult,
    ClaimWorkerInput,
    ClaimWorkerResult,
    DiscardBuildInput,
    DiscardBuildResult,
    LoadBlobsResult,
    PrebuildInput,
    PrebuildRequest,
    PrebuildResult,
    RecordCacheInput,
    RecordCacheResult,
    UploadInput,
    UploadResult,
    ZstdCopiesInput,
    ZstdCopiesResult,
    build_targets,
)
from workflows.prebuild import PrebuildFetchMPacks

A, B, C, D, E, F = "a" * 64, "b" * 64, "c" * 64, "d" * 64, "e" * 64, "f" * 64


@dataclass
class FakeStore:
    """What the fake activities see and do: which want sets are fresh or gone, what got built."""

    queue: str
    fresh: set[tuple[str, ...]] = field(default_factory=set)
    gone: set[str] = field(default_factory=set)
    missing_blob_for: set[tuple[str, ...]] = field(default_factory=set)
    lose_staging_once: set[tuple[str, ...]] = field(default_factory=set)
    superseded: set[tuple[str, ...]] = field(default_factory=set)
    # Assembling these waits until `release` is set (a slow build).
    slow: set[tuple[str, ...]] = field(default_factory=set)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    # Small top-ups the check builds and records itself (`check_or_append`).
    quick: set[tuple[str, ...]] = field(default_factory=set)
    recorded: list[tuple[str, ...]] = field(default_factory=list)
    loads: list[tuple[str, ...]] = field(default_factory=list)
    fresh_bases: list[tuple[str, ...]] = field(default_factory=list)  # loads asking for a base
    discarded: int = 0
    # Want sets whose zstd copies were made, in order (after their record step).
    copied: list[tuple[str, ...]] = field(default_factory=list)

    def activities(self) -> list[Callable[..., Any]]:
        store = self

        @activity.defn(name="check_fetch_mpack_cache")
        async def check(request: CheckCacheInput) -> CheckCacheResult:
            if set(request.want) & store.gone:
                return CheckCacheResult("gone", "force-pushed away")
            if tuple(request.want) in store.fresh and not request.force:
                return CheckCacheResult("fresh")
            return CheckCacheResult("build", task_queue=store.queue)

        @activity.defn(name="check_or_append_top_up")
        async def check_or_append(request: CheckCacheInput) -> CheckCacheResult:
            checked = await check(request)
            want = tuple(request.want)
            if checked.verdict == "build" and want in store.quick and not request.force:
                store.recorded.append(want)
                store.fresh.add(want)
                return CheckCacheResult("built", cache_id="0" * 64)
            return checked

        @activity.defn(name="claim_build_worker")
        async def claim(request: ClaimWorkerInput) -> ClaimWorkerResult:
            return ClaimWorkerResult(store.queue)

        @activity.defn(name="load_fetch_mpack_blobs")
        async def load(request: BuildStepInput) -> LoadBlobsResult:
            want = tuple(request.want)
            store.loads.append(want)
            if request.fresh_base:
                store.fresh_bases.append(want)
            if want in store.superseded:
                raise ApplicationError("a newer push", type=SUPERSEDED, non_retryable=True)
            if want in store.missing_blob_for:
                raise ApplicationError("object x is missing", type=BLOB_MISSING, non_retryable=True)
            return LoadBlobsResult(objects=1, bytes=1, reused=0)

        @activity.defn(name="assemble_fetch_mpack")
        async def assemble(request: BuildStepInput) -> AssembleResult:
            want = tuple(request.want)
            if want in store.slow:
                await store.release.wait()
            if want in store.lose_staging_once:
                store.lose_staging_once.discard(want)
                raise ApplicationError("staging gone", type=STAGING_LOST, non_retryable=True)
            return AssembleResult(size=10, sha256="f" * 64, commits=1, objects=1)

        @activity.defn(name="upload_fetch_mpack")
        async def upload(request: UploadInput) -> UploadResult:
            return UploadResult(f"mpacks/{request.repo_id}/{request.sha256}.mpack")

        @activity.defn(name="record_fetch_mpack_cache")
        async def record(request: RecordCacheInput) -> RecordCacheResult:
            store.recorded.append(tuple(request.want))
            store.fresh.add(tuple(request.want))
            return RecordCacheResult("0" * 64)

        @activity.defn(name="discard_fetch_mpack_build")
        async def discard(request: DiscardBuildInput) -> DiscardBuildResult:
            store.discarded += 1
            return DiscardBuildResult(True)

        @activity.defn(name="make_fetch_mpack_zstd_copies")
        async def copies(request: ZstdCopiesInput) -> ZstdCopiesResult:
            assert tuple(request.want) in store.recorded, "copies made before the record"
            store.copied.append(tuple(request.want))
            return ZstdCopiesResult(1)

        return [check, check_or_append, claim, load, assemble, upload, record, discard, copies]


@pytest.fixture
async def fake(temporal_env: WorkflowEnvironment) -> AsyncIterator[tuple[Client, FakeStore]]:
    queue = f"prebuild-unit-{uuid.uuid4().hex[:8]}"
    store = FakeStore(queue)
    async with Worker(
        temporal_env.client,
        task_queue=queue,
        workflows=[PrebuildFetchMPacks],
        activities=store.activities(),
    ):
        yield temporal_env.client, store


async def run(
    client: Client, store: FakeStore, tips: list[str], force: bool = False
) -> PrebuildResult:
    handle = await start(client, store, tips, force)
    return await handle.result()


async def start(
    client: Client, store: FakeStore, tips: list[str], force: bool = False
) -> WorkflowHandle[PrebuildFetchMPacks, PrebuildResult]:
    return await client.start_workflow(
        PrebuildFetchMPacks.run,
        PrebuildInput(
            repo_id="r1",
            repo_name="alice/song",
            pending=PrebuildRequest(tips, force),
            idle_seconds=0.1,
        ),
        id=f"prebuild-unit/{uuid.uuid4()}",
        task_queue=store.queue,
        execution_timeout=timedelta(seconds=60),
    )


def test_targets_are_each_tip_and_the_head_set() -> None:
    assert build_targets([B, A, B]) == [[A, B], [A], [B]]
    assert build_targets([A]) == [[A]]


async def test_writes_a_row_per_tip_and_head_set_and_skips_fresh(
    fake: tuple[Client, FakeStore],
) -> None:
    client, store = fake
    store.fresh.add((B,))
    result = await run(client, store, [A, B, C])
    assert sorted(store.recorded) == [(A,), (A, B, C), (C,)]
    assert (result.targets, result.hits, result.built, result.skipped) == (4, 1, 3, 0)
    assert store.discarded == 0  # a successful upload cleans its own staging folder


async def test_force_rebuilds_fresh_entries(fake: tuple[Client, FakeStore]) -> None:
    client, store = fake
    store.fresh.add((A,))
    result = await run(client, store, [A], force=True)
    assert store.recorded == [(A,)]
    assert result.built == 1


async def test_tips_gone_before_the_build_are_skipped(fake: tuple[Client, FakeStore]) -> None:
    client, store = fake
    store.gone.add(B)
    result = await run(client, store, [A, B])
    assert store.recorded == [(A,)]
    assert result.skipped == 2  # B alone, and the head set that contains it


async def test_missing_blob_is_not_retried(fake: tuple[Client, FakeStore]) -> None:
    client, store = fake
    store.missing_blob_for.add((A,))
    result = await run(client, store, [A])
    assert store.loads == [(A,)]
    assert store.recorded == []
    assert result.skipped == 1


async def test_lost_staging_starts_the_build_over(fake: tuple[Client, FakeStore]) -> None:
    client, store = fake
    store.lose_staging_once.add((A,))
    result = await run(client, store, [A])
    assert store.loads == [(A,), (A,)]
    assert store.recorded == [(A,)]
    assert result.built == 1
    assert store.discarded == 1  # the failed attempt's staging folder


async def test_a_slow_build_does_not_hold_up_the_others(fake: tuple[Client, FakeStore]) -> None:
    """Build slots, not waves: while one tip's pack assembles, the other slot builds the rest."""
    client, store = fake
    store.slow.add((A,))
    handle = await start(client, store, [A, B, C])
    await wait_until(lambda: len(store.recorded) == 3)
    assert store.recorded[0] == (A, B, C)
    assert sorted(store.recorded[1:]) == [(B,), (C,)]
    store.release.set()
    result = await handle.result()
    assert store.recorded[-1] == (A,)
    assert result.built == 4


async def test_the_clone_pack_builds_on_its_own(fake: tuple[Client, FakeStore]) -> None:
    client, store = fake
    store.slow.add((A, B))
    handle = await start(client, store, [A, B])
    await wait_until(lambda: len(store.loads) == 1)
    await asyncio.sleep(0.5)
    assert store.loads == [(A, B)]  # the tips wait for the head set
    store.release.set()
    await handle.result()
    assert store.recorded[0] == (A, B)
    assert sorted(store.recorded[1:]) == [(A,), (B,)]


async def test_newer_tips_replace_the_targets_not_yet_started(
    fake: tuple[Client, FakeStore],
) -> None:
    client, store = fake
    store.slow.update({(A,), (B,), (C,), (D,)})  # every slot busy with the first push's tips
    handle = await start(client, store, [A, B, C, D, E])
    await wait_until(lambda: len(store.loads) == 5)  # the head set, then A to D
    await handle.signal(PrebuildFetchMPacks.tips_pushed, PrebuildRequest([A, B, C, D, F]))
    await asyncio.sleep(0.3)  # the signal is in before the slots free up
    store.release.set()
    await handle.result()
    assert (E,) not in store.loads  # E was replaced by F before it started
    assert sorted(store.recorded) == [
        (A,),
        (A, B, C, D, E),
        (A, B, C, D, F),
        (B,),
        (C,),
        (D,),
        (F,),
    ]
    assert store.loads.count((A,)) == 1  # already built for the first push: fresh, not redone


async def test_a_small_top_up_is_built_by_the_check_and_the_rest_in_parallel(
    fake: tuple[Client, FakeStore],
) -> None:
    """A one-commit push: the check builds each top-up itself (no staged steps), the head set's
    first, then every tip at once."""
    client, store = fake
    store.quick.update({(A, B, C), (A,), (B,), (C,)})
    result = await run(client, store, [A, B, C])
    assert store.loads == []
    assert store.recorded[0] == (A, B, C)
    assert sorted(store.recorded[1:]) == [(A,), (B,), (C,)]
    assert (result.targets, result.built) == (4, 4)


async def test_a_forced_rebuild_builds_a_new_base(fake: tuple[Client, FakeStore]) -> None:
    client, store = fake
    store.quick.add((A,))  # a push would have appended a top-up
    await run(client, store, [A])
    assert store.loads == []
    await run(client, store, [A], force=True)
    assert store.loads == [(A,)]
    assert store.fresh_bases == [(A,)]


async def test_a_superseded_build_is_skipped_without_error_or_retry(
    fake: tuple[Client, FakeStore],
) -> None:
    client, store = fake
    store.superseded.add((A,))
    handle = await start(client, store, [A])
    result = await handle.result()
    assert store.loads == [(A,)]  # not started over like a lost worker
    assert (result.built, result.skipped) == (0, 1)
    assert store.discarded == 1
    status = await handle.query(PrebuildFetchMPacks.status)
    assert status.last_error is None  # a newer push is not a failure


async def wait_until(condition: Callable[[], bool], within: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_a_forced_rebuild_builds_again_a_target_already_in_flight(
    fake: tuple[Client, FakeStore],
) -> None:
    client, store = fake
    store.slow.add((A,))
    handle = await start(client, store, [A])
    await wait_until(lambda: store.loads == [(A,)])
    await handle.signal(PrebuildFetchMPacks.rebuild, PrebuildRequest([A], force=True))
    await asyncio.sleep(0.3)
    store.release.set()
    result = await handle.result()
    assert store.loads == [(A,), (A,)]  # the pack asked for is built after the request
    assert result.built == 2


async def test_each_target_built_gets_its_zstd_copies_after_its_record(
    fake: tuple[Client, FakeStore],
) -> None:
    """Issue 15: the prebuild makes the copies, not the first `mpack-zstd` clone; a target
    already fresh or gone gets none (its copies were made when it was built)."""
    client, store = fake
    store.fresh.add((B,))
    store.gone.add(C)
    store.quick.add((A,))
    result = await run(client, store, [A, B, C, D])
    # A: a quick top-up (the check records it), D and its tip: staged builds; B fresh; C gone.
    assert sorted(store.recorded) == [(A,), (D,)] and result.built == 2
    assert sorted(store.copied) == sorted(store.recorded)
