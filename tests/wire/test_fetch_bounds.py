"""What a stranger can make a fetch cost, and what a lost pack does to a clone (issue 12: 1, 2, 5).

- Only want sets clones ask for (the head set, a current tip) earn a cache row; any other is
  built on demand and never recorded.
- Synchronous builds take hub-wide and per-repository slots; beyond them 503 with Retry-After.
- A body of unknown or large size is read only after the repo check.
- A pack storage lost is dropped and built again, never promised."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import msgpack
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import parts_of
from musehub.db.models import FetchMPackCache
from musehub.services import mpack_cache
from tests.conftest import Hub
from tests.mpack.helpers import VECTOR_HEADS, load_vector
from tests.wire.helpers import HEADERS, PushedRepo, call, decode, push_vector

VECTOR = load_vector()
MAIN, CHORUS = VECTOR_HEADS["main"], VECTOR_HEADS["chorus"]
OLD = next(c["commit_id"] for c in VECTOR["commits"] if c["commit_id"] not in (MAIN, CHORUS))


async def rows(hub: Hub, repo_id: str) -> int:
    async with AsyncSession(hub.engine) as session:
        count = await session.scalar(
            select(func.count())
            .select_from(FetchMPackCache)
            .where(FetchMPackCache.repo_id == repo_id)
        )
    return int(count or 0)


async def fetch(
    hub: Hub, repo: PushedRepo, want: list[str], have: list[str] | None = None, url: bool = True
) -> httpx.Response:
    body: dict[str, object] = {"want": want, "have": have or []}
    if url:
        body["capabilities"] = ["mpack-url"]
    return await call(hub.client, repo.owner, repo.slug, "fetch", body)


async def test_a_want_set_no_clone_asks_for_is_built_but_never_recorded(hub: Hub) -> None:
    repo = await push_vector(hub, branches=("main", "chorus"))
    old = await fetch(hub, repo, [OLD])
    assert old.headers["x-musehub-cache"] == "UNCACHED"
    assert decode(old)["mpack_size"] > 0
    assert await rows(hub, repo.repo_id) == 0

    assert (await fetch(hub, repo, [MAIN])).headers["x-musehub-cache"] == "MISS"
    assert (await fetch(hub, repo, [CHORUS, MAIN])).headers["x-musehub-cache"] == "MISS"
    assert await rows(hub, repo.repo_id) == 2


async def test_full_build_slots_answer_503_with_retry_after(hub: Hub) -> None:
    repo = await push_vector(hub)
    limits = hub.settings.mpack
    saved = (limits.sync_builds, limits.sync_builds_per_repo)
    limits.sync_builds_per_repo = 1
    try:
        async with AsyncSession(hub.engine) as holder:
            key = f"sync-builds/{repo.repo_id}"
            assert await mpack_cache.take_build_slot(holder, key, 1)
            busy = await fetch(hub, repo, [MAIN], have=[OLD])
            assert busy.status_code == 503
            assert busy.headers["retry-after"] == "5"
            assert "packs of this repository are being built" in busy.text
            await holder.rollback()  # the slot is free again
        assert (await fetch(hub, repo, [MAIN], have=[OLD])).status_code == 200

        limits.sync_builds = 1
        async with AsyncSession(hub.engine) as holder:
            assert await mpack_cache.take_build_slot(holder, "sync-builds", 1)
            busy = await fetch(hub, repo, [MAIN])
            assert busy.status_code == 503 and "try again in 5 seconds" in busy.text
            assert await rows(hub, repo.repo_id) == 0  # nothing half-written
    finally:
        limits.sync_builds, limits.sync_builds_per_repo = saved
    assert (await fetch(hub, repo, [MAIN])).headers["x-musehub-cache"] == "MISS"


async def test_a_body_of_unknown_size_is_not_read_for_a_missing_repo(hub: Hub) -> None:
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(1000):
            sent += 1
            yield b"\x00" * 65536

    response = await hub.client.post("/nobody/nothing/fetch", content=body(), headers=HEADERS)
    assert response.status_code == 404
    assert sent <= 1  # at most what the transport pulled before the app answered


async def test_a_declared_oversized_body_is_refused_before_it_is_read(hub: Hub) -> None:
    repo = await push_vector(hub)
    headers = {**HEADERS, "Content-Length": str(200 * 1024 * 1024)}
    response = await hub.client.post(
        f"/{repo.owner}/{repo.slug}/fetch", content=b"\x80", headers=headers
    )
    assert response.status_code == 413


async def test_a_lost_pack_is_built_again_for_the_url_form(hub: Hub) -> None:
    repo = await push_vector(hub, branches=("main", "chorus"))
    first = decode(await fetch(hub, repo, [MAIN]))
    key = f"mpacks/{repo.repo_id}/{first['mpack_sha256']}.mpack"
    await hub.storage.delete(key)
    parts_of(hub.app).fetch.forget_repo(repo.owner, repo.slug)  # past this process's memory

    again = await fetch(hub, repo, [MAIN])
    assert again.headers["x-musehub-cache"] == "MISS"
    # A synchronous build writes objects as their reads end: maybe another content address.
    rebuilt = f"mpacks/{repo.repo_id}/{decode(again)['mpack_sha256']}.mpack"
    assert await hub.storage.size(rebuilt) == decode(again)["mpack_size"]
    assert (await fetch(hub, repo, [MAIN])).headers["x-musehub-cache"] == "HIT"


async def test_a_lost_pack_is_never_promised_inline(hub: Hub) -> None:
    repo = await push_vector(hub, branches=("main", "chorus"))
    first = decode(await fetch(hub, repo, [MAIN]))
    await fetch(hub, repo, [MAIN])  # now answered from this process's memory
    await hub.storage.delete(f"mpacks/{repo.repo_id}/{first['mpack_sha256']}.mpack")

    inline = await fetch(hub, repo, [MAIN], url=False)
    assert inline.status_code == 200
    assert inline.headers["x-musehub-cache"] == "MISS"
    assert int(inline.headers["content-length"]) == len(inline.content)
    bundle = msgpack.unpackb(inline.content, raw=False)
    assert MAIN in {c["commit_id"] for c in bundle["commits"]}
    assert bundle["branch_heads"] == {"main": MAIN, "chorus": CHORUS}
