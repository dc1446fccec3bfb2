"""Issue 14 item 3: a cold fetch is never silent for long. Objects go into a streamed pack in the
order their reads end (a slow read holds only itself), a stuck read is hedged, the stream ends
when the pack is whole (not after its upload), and a fetch that finds its want set being built
streams too: the same pack when the build runs in this process, a build of its own when another
process builds it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import msgpack

from musehub.services.blob_reads import PackObject, hedged_reader, read_as_completed
from musehub.services.fetch import FetchMPacks
from musehub.services.mpack_build import assemble_mpack
from musehub.storage import LatencyInjectingStorage, ObjectStorage
from tests.conftest import Hub
from tests.mpack.helpers import VECTOR_HEADS
from tests.wire.helpers import push_vector
from tests.wire.test_streamed_builds import READ_DELAY, slow_fetcher, slow_settings

MAIN, CHORUS = VECTOR_HEADS["main"], VECTOR_HEADS["chorus"]


def objects(count: int) -> list[PackObject]:
    return [PackObject(f"{i:064x}", f"k/{i}", 10) for i in range(count)]


async def test_a_slow_read_holds_only_itself() -> None:
    async def read(obj: PackObject) -> bytes:
        await asyncio.sleep(0.5 if obj.storage_key == "k/0" else 0.01)
        return obj.storage_key.encode()

    began = time.perf_counter()
    order = []
    async for obj, content in read_as_completed(objects(20), read, concurrency=4):
        assert content == obj.storage_key.encode()
        order.append((obj.storage_key, time.perf_counter() - began))
    assert sorted(key for key, _ in order) == sorted(o.storage_key for o in objects(20))
    assert order[-1][0] == "k/0"  # the slow one came last...
    assert order[-2][1] < 0.3  # ...and the 19 others did not wait for it


async def test_a_stuck_read_is_hedged_and_the_stuck_one_stopped() -> None:
    stuck = asyncio.Event()
    calls: dict[str, int] = {}
    cancelled = []

    async def read(obj: PackObject) -> bytes:
        calls[obj.storage_key] = calls.get(obj.storage_key, 0) + 1
        if obj.storage_key == "k/3" and calls[obj.storage_key] == 1:
            try:
                await stuck.wait()  # never set: a GET that hangs
            except asyncio.CancelledError:
                cancelled.append(obj.storage_key)
                raise
        await asyncio.sleep(0.005)
        return obj.storage_key.encode()

    hedged = hedged_reader(read, concurrency=8, after_seconds=0.1)
    async with asyncio.timeout(5):
        got = [
            obj.storage_key async for obj, _ in read_as_completed(objects(8), hedged, concurrency=8)
        ]
    assert sorted(got) == sorted(o.storage_key for o in objects(8))
    assert calls["k/3"] == 2 and cancelled == ["k/3"]
    assert all(n == 1 for key, n in calls.items() if key != "k/3")  # fast reads: no hedge


async def test_a_pack_in_arrival_order_holds_the_same_records(hub: Hub, tmp_path: Path) -> None:
    """The format lets objects come in any order; the client reads them by id."""
    from sqlalchemy.ext.asyncio import AsyncSession

    from musehub.services.blob_reads import storage_blob_reader
    from musehub.services.mpack_build import plan_fetch

    repo = await push_vector(hub, branches=("main", "chorus"))
    packs = []
    async with AsyncSession(hub.engine) as session:
        plan = await plan_fetch(session, repo.repo_id, [MAIN, CHORUS], [])
        for arrival in (False, True):
            with (tmp_path / f"{arrival}.mpack").open("wb") as out:
                await assemble_mpack(
                    session,
                    plan,
                    out,
                    storage_blob_reader(hub.storage),
                    concurrency=4,
                    arrival_order=arrival,
                )
            packs.append(msgpack.unpackb((tmp_path / f"{arrival}.mpack").read_bytes()))
    in_plan, arrived = packs
    assert [o["object_id"] for o in in_plan["objects"]] == [o.object_id for o in plan.objects]
    assert sorted(arrived["objects"], key=lambda o: o["object_id"]) == in_plan["objects"]
    assert arrived["commits"] == in_plan["commits"]
    assert arrived["snapshots"] == in_plan["snapshots"]


class SlowUploads(LatencyInjectingStorage):
    """Reads slowed as in the other tests, and every upload held `upload_delay` seconds."""

    def __init__(self, inner: ObjectStorage, upload_delay: float) -> None:
        super().__init__(inner, READ_DELAY)
        self.upload_delay = upload_delay

    async def put_file(self, key: str, path: Path) -> None:
        await asyncio.sleep(self.upload_delay)
        await self.inner.put_file(key, path)


async def test_the_stream_ends_when_the_pack_is_whole_not_when_it_is_uploaded(hub: Hub) -> None:
    repo = await push_vector(hub, branches=("main",))
    upload_delay = 3.0
    fetcher = FetchMPacks(hub.engine, SlowUploads(hub.storage, upload_delay), slow_settings(hub))
    began = time.perf_counter()
    answer = await fetcher.answer(repo.owner, repo.slug, [MAIN], [], None, form="inline")
    assert answer.growing is not None
    streamed = b"".join([chunk async for chunk in answer.growing.chunks()])
    streamed_in = time.perf_counter() - began
    assert msgpack.unpackb(streamed)["commits"]
    # Read time alone is at most 7 reads (one at a time) plus the plan; the upload's 3 s are
    # not in it.
    assert streamed_in < upload_delay, f"the stream waited for the upload: {streamed_in:.2f}s"
    await builds_over(fetcher)
    hit = await fetcher.answer(repo.owner, repo.slug, [MAIN], [], None, form="url")
    assert (
        hit.cache == "HIT"
        and hit.pack is not None
        and streamed == await hub.storage.get(hit.pack.mpack_key)
    )


async def builds_over(fetcher: FetchMPacks) -> None:
    async with asyncio.timeout(30):
        await asyncio.gather(*fetcher.builds.streamed)


def counting(fetcher: FetchMPacks) -> list[str]:
    builds: list[str] = []
    real = fetcher.builds.build

    async def build(*args: Any, **kwargs: Any) -> Any:
        builds.append(args[1])
        return await real(*args, **kwargs)

    fetcher.builds.build = build
    return builds


async def test_fetches_of_a_want_set_building_in_this_process_stream_the_same_build(
    hub: Hub,
) -> None:
    repo = await push_vector(hub, branches=("main", "chorus"))
    fetcher = slow_fetcher(hub)
    builds = counting(fetcher)
    want = [MAIN, CHORUS]
    first = await fetcher.answer(repo.owner, repo.slug, want, [], None, form="inline")
    second = await fetcher.answer(repo.owner, repo.slug, want, [], None, form="url")
    assert first.growing is not None and second.growing is not None
    one, two = await asyncio.gather(
        *(read_all(a.growing) for a in (first, second) if a.growing is not None)
    )
    assert one == two and msgpack.unpackb(one)["objects"]
    assert builds == [repo.repo_id]  # one build for both


async def read_all(growing: Any) -> bytes:
    return b"".join([chunk async for chunk in growing.chunks()])


async def test_a_fetch_waiting_for_another_process_build_streams_a_build_of_its_own(
    hub: Hub,
) -> None:
    """Two FetchMPacks on one database are two API processes: the single flight is the want
    set's advisory lock, which the second holds off only for the streaming threshold."""
    repo = await push_vector(hub, branches=("main", "chorus"))
    want = [MAIN, CHORUS]
    slower = FetchMPacks(
        hub.engine, LatencyInjectingStorage(hub.storage, 1.0), slow_settings(hub)
    )  # 7 blobs read one at a time: ~7 s
    other = slow_fetcher(hub)  # ~1 s
    first = await slower.answer(repo.owner, repo.slug, want, [], None, form="inline")
    assert first.growing is not None  # the slow build holds the want set's lock
    began = time.perf_counter()
    second = await other.answer(repo.owner, repo.slug, want, [], None, form="inline")
    assert second.growing is not None, "it waited for the other build instead of streaming"
    streamed = await read_all(second.growing)
    assert time.perf_counter() - began < 6.0  # its own build, not the other one's 7 s
    first_bytes = await read_all(first.growing)
    mine, theirs = msgpack.unpackb(streamed), msgpack.unpackb(first_bytes)
    assert mine["commits"] == theirs["commits"]
    assert sorted(o["object_id"] for o in mine["objects"]) == sorted(
        o["object_id"] for o in theirs["objects"]
    )
    await builds_over(slower)
    await builds_over(other)
    hit = await other.answer(repo.owner, repo.slug, want, [], None, form="url")
    assert hit.cache == "HIT" and hit.pack is not None
    assert first_bytes == await hub.storage.get(hit.pack.mpack_key)  # the first one's, recorded
