"""A legacy clone whose build runs long gets the pack as it is written, instead of silence until
the build ends: bytes identical to the recorded pack, the build finished and recorded even if
the client leaves, and a build that fails cuts the stream instead of ending it cleanly."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import msgpack
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from musehub.db.models import FetchMPackCache
from musehub.mpack.inline import INLINE_HEADER, branch_heads_trailer
from musehub.services.blob_reads import BlobMissing
from musehub.services.fetch import FetchAnswer, FetchMPacks
from musehub.services.growing_pack import GrowingPack
from musehub.settings import Settings
from musehub.storage import LatencyInjectingStorage
from tests.conftest import Hub
from tests.mpack.helpers import VECTOR_HEADS, load_vector
from tests.wire.helpers import HEADERS, PushedRepo, build_reading_slowly, decode, push_vector

MAIN, CHORUS = VECTOR_HEADS["main"], VECTOR_HEADS["chorus"]
OBJECTS = len(load_vector()["objects"])
READ_DELAY = 0.15  # per blob, one blob at a time: the vector's build takes about a second
STREAM_AFTER = 0.1


def slow_settings(hub: Hub) -> Settings:
    api = hub.settings.api.model_copy(update={"stream_builds_after_seconds": STREAM_AFTER})
    storage = hub.settings.storage.model_copy(update={"read_concurrency": 1})
    return hub.settings.model_copy(update={"api": api, "storage": storage})


def slow_fetcher(hub: Hub) -> FetchMPacks:
    storage = LatencyInjectingStorage(hub.storage, READ_DELAY)
    return FetchMPacks(hub.engine, storage, slow_settings(hub))


async def test_a_growing_pack_reads_every_byte_even_after_the_file_is_gone(tmp_path: Path) -> None:
    path = tmp_path / "pack"
    path.write_bytes(b"")
    growing = GrowingPack()
    growing.attach(path)
    pieces = [os.urandom(300_000) for _ in range(5)]

    def write_slowly() -> None:
        with path.open("ab") as out:
            for piece in pieces:
                out.write(piece)
                out.flush()
                time.sleep(0.03)
        path.unlink()  # the build moves its file into storage when it is done

    async def read_all() -> bytes:
        return b"".join([chunk async for chunk in growing.reader().chunks()])

    reader = asyncio.create_task(read_all())
    await asyncio.to_thread(write_slowly)
    growing.settle(sum(map(len, pieces)))
    assert await reader == b"".join(pieces)


async def test_a_growing_pack_raises_the_builds_error_after_what_was_written(
    tmp_path: Path,
) -> None:
    path = tmp_path / "pack"
    path.write_bytes(b"half a pack")
    growing = GrowingPack()
    growing.attach(path)
    reader = growing.reader()
    growing.settle(None, BlobMissing("object x is missing from storage"))
    read = bytearray()
    with pytest.raises(BlobMissing):
        async for chunk in reader.chunks():
            read += chunk
    assert bytes(read) == b"half a pack"


async def test_a_slow_cold_clone_streams_while_it_builds_then_is_recorded(hub: Hub) -> None:
    repo = await push_vector(hub, branches=("main", "chorus"))
    fetcher = slow_fetcher(hub)
    began = time.perf_counter()
    answer = await fetcher.answer(repo.owner, repo.slug, [MAIN, CHORUS], [], None, form="inline")
    answered = time.perf_counter() - began
    assert answer.growing is not None and answer.cache == "MISS"
    assert answered < OBJECTS * READ_DELAY  # before the build could have ended

    streamed = b"".join([chunk async for chunk in answer.growing.chunks()])
    async with asyncio.timeout(30):  # the stream ends when the pack is whole, before its record
        await asyncio.gather(*fetcher.builds.streamed)

    hit = await fetcher.answer(repo.owner, repo.slug, [MAIN, CHORUS], [], None, form="inline")
    assert hit.cache == "HIT" and hit.pack is not None and hit.growing is None
    assert streamed == await hub.storage.get(hit.pack.mpack_key)


async def test_a_client_that_leaves_does_not_stop_the_build(hub: Hub) -> None:
    repo = await push_vector(hub, branches=("main",))
    fetcher = slow_fetcher(hub)
    answer = await fetcher.answer(repo.owner, repo.slug, [MAIN], [], None, form="inline")
    assert answer.growing is not None
    chunks = answer.growing.chunks()
    await anext(chunks)
    await chunks.aclose()  # the client hung up after the first bytes

    hit = await wait_for_hit(fetcher, repo, [MAIN])
    assert hit.pack is not None and await hub.storage.exists(hit.pack.mpack_key)


async def wait_for_hit(fetcher: FetchMPacks, repo: PushedRepo, want: list[str]) -> FetchAnswer:
    for _ in range(100):
        await asyncio.sleep(0.1)
        async with asyncio.timeout(30):
            answer = await fetcher.answer(repo.owner, repo.slug, want, [], None, form="url")
        if answer.cache == "HIT":
            return answer
    raise AssertionError("the abandoned build never recorded its pack")


async def test_a_build_that_fails_mid_stream_cuts_the_answer_and_records_nothing(
    hub: Hub,
) -> None:
    repo = await push_vector(hub, branches=("main",))
    fetcher = slow_fetcher(hub)
    vanished = sorted(o["object_id"] for o in load_vector()["objects"])[-1]
    real_build = fetcher.builds.build

    async def build_with_a_lost_blob(*args: object, **kwargs: object) -> object:
        await hub.storage.delete(f"objects/{repo.repo_id}/{vanished[:2]}/{vanished}")
        return await real_build(*args, **kwargs)  # type: ignore[arg-type]

    fetcher.builds.build = build_with_a_lost_blob  # type: ignore[assignment]
    answer = await fetcher.answer(repo.owner, repo.slug, [MAIN], [], None, form="inline")
    assert answer.growing is not None
    with pytest.raises(BlobMissing):
        async for _ in answer.growing.chunks():
            pass
    fetcher.builds.build = real_build
    assert await repo_has_no_row(hub, repo)


async def repo_has_no_row(hub: Hub, repo: PushedRepo) -> bool:
    async with AsyncSession(hub.engine) as session:
        rows = await session.scalar(
            select(func.count())
            .select_from(FetchMPackCache)
            .where(FetchMPackCache.repo_id == repo.repo_id)
        )
    return rows == 0


@pytest.mark.parametrize(
    "capabilities",
    [[], ["mpack-chain", "mpack-url", "mpack-zstd"]],
    ids=["legacy", "musehub-clone"],
)
async def test_the_route_streams_a_slow_build_chunked_and_it_decodes_as_the_stored_pack(
    hub: Hub, capabilities: list[str]
) -> None:
    """Whatever the client asked for: a URL would need the finished pack's hash, and every
    client reads an inline answer."""
    repo = await push_vector(hub, branches=("main", "chorus"))
    fetcher: FetchMPacks = hub.app.state.parts.fetch
    real_build = fetcher.builds.build
    fetcher.builds.build = build_reading_slowly(hub, 0.4)
    asked = {"want": [MAIN, CHORUS], "have": [], "capabilities": capabilities}
    body = msgpack.packb({"want": [MAIN, CHORUS], "have": []})
    try:
        streamed = await hub.client.post(
            f"/{repo.owner}/{repo.slug}/fetch", content=msgpack.packb(asked), headers=HEADERS
        )
        async with asyncio.timeout(30):  # the stream ends when the pack is whole, not recorded
            await asyncio.gather(*fetcher.builds.streamed)
    finally:
        fetcher.builds.build = real_build
    assert streamed.headers["x-musehub-cache"] == "MISS"
    assert "content-length" not in streamed.headers  # chunked: the length was not known yet
    stored = await hub.client.post(
        f"/{repo.owner}/{repo.slug}/fetch", content=body, headers=HEADERS
    )
    assert stored.headers["x-musehub-cache"] == "HIT"
    assert decode(streamed) == decode(stored)
    heads = decode(stored)["branch_heads"]
    assert streamed.content[:1] == INLINE_HEADER
    assert streamed.content.endswith(branch_heads_trailer(heads))
    if capabilities:  # and once built, the same client gets what it asked for
        again = await hub.client.post(
            f"/{repo.owner}/{repo.slug}/fetch", content=msgpack.packb(asked), headers=HEADERS
        )
        assert again.headers["x-musehub-cache"] == "HIT" and "mpack_parts" in decode(again)


async def test_a_slow_pull_streams_as_uncached_and_records_nothing(hub: Hub) -> None:
    repo = await push_vector(hub, branches=("main",))
    parent = next(c for c in load_vector()["commits"] if c["commit_id"] == MAIN)
    have = [parent["parent_commit_id"]]
    answer = await slow_fetcher(hub).answer(repo.owner, repo.slug, [MAIN], have, None, form="url")
    assert answer.growing is not None and answer.cache == "UNCACHED"
    assert b"".join([chunk async for chunk in answer.growing.chunks()])
    assert await repo_has_no_row(hub, repo)
