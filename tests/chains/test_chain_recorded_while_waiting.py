"""A clone that waited for another builder of its want set and then found a chain recorded
(the prebuild's top-up landed while it waited) answers in the form it asked for: an
`mpack-url` client gets one URL, never a 500 (seen once in the soak)."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import msgpack
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from musehub.mpack.reader import read_mpack
from musehub.services import mpack_cache
from musehub.services.chains import Chain
from tests.chains.history import History
from tests.chains.test_chain_records import TTL, build_part, repo_id_of
from tests.conftest import Hub
from tests.wire.helpers import call, decode


def spy_on_lock_tries(monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """Set once a fetch has tried the want set's lock and found it taken."""
    refused = asyncio.Event()
    try_lock = mpack_cache.try_lock_want_set

    async def trying(*args: Any, **kwargs: Any) -> bool:
        taken: bool = await try_lock(*args, **kwargs)
        if not taken:
            refused.set()
        return taken

    monkeypatch.setattr(mpack_cache, "try_lock_want_set", trying)
    return refused


async def test_a_url_clone_that_waited_gets_one_url_for_a_chain_recorded_meanwhile(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = spy_on_lock_tries(monkeypatch)
    owner, slug, token = await hub.create_repo()
    history = History()
    c1 = history.commit([], {"a": b"one", "b": b"same"})
    c2 = history.commit([c1], {"a": b"two", "b": b"same", "c": b"new"})
    await history.push(hub, owner, slug, token, "main", c2)
    body = {"want": [c2], "have": [], "capabilities": ["mpack-url"]}

    async with AsyncSession(hub.engine) as builder:
        repo = await repo_id_of(builder, owner, slug)
        await mpack_cache.lock_want_set(builder, repo, [c2])  # a builder of [c2] in flight
        fetching = asyncio.create_task(call(hub.client, owner, slug, "fetch", body, token))
        await asyncio.wait_for(refused.wait(), 10)  # the fetch waits for our build
        base = await build_part(hub, builder, repo, [c1], [])
        top_up = await build_part(hub, builder, repo, [c2], [c1])
        await mpack_cache.record_chain(
            builder, repo_id=repo, want=[c2], chain=Chain((base, top_up)), ttl=TTL
        )
        await builder.commit()  # the chain is recorded and the lock is free

    answer = await fetching
    assert answer.headers["x-musehub-cache"] == "HIT"
    pack_url = decode(answer)["mpack_url"]
    pack = (await hub.client.get(pack_url)).content
    commits = {c["commit_id"] for c in read_mpack(io.BytesIO(pack)).commits}
    assert commits == {c1, c2}
    assert "mpack_parts" not in msgpack.unpackb(answer.content)
