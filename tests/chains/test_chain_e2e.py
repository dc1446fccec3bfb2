"""Pack chains end to end: a push appends a top-up instead of rebuilding, and clones and pulls
are answered from the chain, as hits, in the three answer forms (issue 13)."""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

import httpx
import msgpack
from sqlalchemy.ext.asyncio import AsyncSession

from musehub.services import mpack_cache
from musehub.services.chains import Chain
from tests.chains.history import History
from tests.conftest import Hub
from tests.prebuild.conftest import PrebuildHub
from tests.wire.helpers import call, decode

BLOB = 200_000  # each commit adds a file this big: the top-up is about one file


async def chain_of(hub: Hub, repo_id: str, want: list[str], within: float = 30) -> Chain:
    """The want set's chain, once the prebuild has recorded it."""
    deadline = time.monotonic() + within
    while True:
        async with AsyncSession(hub.engine) as session:
            entry = await mpack_cache.lookup(session, repo_id, want)
        if entry is not None and entry.chain is not None:
            return entry.chain
        assert time.monotonic() < deadline, f"no chain for {want}"
        await asyncio.sleep(0.1)


async def fetch(
    hub: Hub, owner: str, slug: str, want: list[str], have: list[str], caps: list[str]
) -> httpx.Response:
    body = {"want": want, "have": have, "capabilities": caps}
    response = await call(hub.client, owner, slug, "fetch", body)
    assert response.status_code == 200, response.text
    return response


async def download(hub: Hub, url: str) -> bytes:
    path = url.removeprefix(hub.settings.public_base_url)
    response = await hub.client.get(path)
    assert response.status_code == 200
    return response.content


def ids(pack: dict[str, Any]) -> dict[str, set[str]]:
    return {
        "commits": {c["commit_id"] for c in pack["commits"]},
        "snapshots": {s["snapshot_id"] for s in pack["snapshots"]},
        "objects": {o["object_id"] for o in pack["objects"]},
    }


async def applied(hub: Hub, answer: dict[str, Any]) -> dict[str, set[str]]:
    """What a chain client holds after applying every part in order (each hash checked)."""
    held: dict[str, set[str]] = {"commits": set(), "snapshots": set(), "objects": set()}
    for part in answer["mpack_parts"]:
        data = await download(hub, part["url"])
        assert len(data) == part["size"]
        assert hashlib.sha256(data).hexdigest() == part["sha256"]
        for kind, found in ids(msgpack.unpackb(data, raw=False)).items():
            held[kind] |= found
    return held


async def test_a_push_appends_a_top_up_and_clones_and_pulls_hit(
    prebuild_hub: PrebuildHub,
) -> None:
    hub = prebuild_hub
    owner, slug, token = await hub.create_repo()
    history = History()
    files = {f"f{n}": bytes([n]) * BLOB for n in range(8)}
    tip = history.commit([], files)
    for n in range(3):
        tip = history.commit([tip], {**files, f"new{n}": bytes([100 + n]) * BLOB})
    await history.push(hub, owner, slug, token, "main", tip)
    repo_id = decode(await call(hub.client, owner, slug, "refs"))["repo_id"]
    base = await chain_of(hub, repo_id, [tip])
    assert len(base.parts) == 1

    old = tip
    tip = history.commit([old], {**files, "one more": b"x" * BLOB})
    await history.push(hub, owner, slug, token, "main", tip)
    chain = await chain_of(hub, repo_id, [tip])
    assert chain.parts[:-1] == base.parts  # appended, not rebuilt
    top_up = chain.parts[-1]
    assert top_up.sections[0].count == 1  # one commit
    assert top_up.size < BLOB + 64 * 1024 < base.parts[0].size / 4

    # A clone, in the three forms: every one holds exactly the full history.
    full = ids(msgpack.unpackb(await fetch_inline(hub, owner, slug, [tip], []), raw=False))
    assert len(full["commits"]) == 5
    chained = decode(await fetch(hub, owner, slug, [tip], [], ["mpack-chain"]))
    assert len(chained["mpack_parts"]) == 2
    assert await applied(hub, chained) == full
    one = decode(await fetch(hub, owner, slug, [tip], [], ["mpack-url"]))
    data = await download(hub, one["mpack_url"])
    assert hashlib.sha256(data).hexdigest() == one["mpack_sha256"]
    assert ids(msgpack.unpackb(data, raw=False)) == full

    # A pull from the old tip: only the top-up, as a hit, in every form.
    response = await fetch(hub, owner, slug, [tip], [old], ["mpack-chain"])
    assert response.headers["x-musehub-cache"] == "HIT"
    rest = decode(response)
    assert [p["sha256"] for p in rest["mpack_parts"]] == [top_up.sha256]
    url = await fetch(hub, owner, slug, [tip], [old], ["mpack-url"])
    assert url.headers["x-musehub-cache"] == "HIT"
    assert decode(url)["mpack_sha256"] == top_up.sha256
    pulled = msgpack.unpackb(await fetch_inline(hub, owner, slug, [tip], [old]), raw=False)
    assert ids(pulled)["commits"] == {tip}
    assert pulled["branch_heads"] == {"main": tip}

    # A herd pulling the newest push: no build, every answer a hit.
    herd = await asyncio.gather(
        *(fetch(hub, owner, slug, [tip], [old], ["mpack-url"]) for _ in range(20))
    )
    assert {r.headers["x-musehub-cache"] for r in herd} == {"HIT"}


async def fetch_inline(hub: Hub, owner: str, slug: str, want: list[str], have: list[str]) -> bytes:
    response = await fetch(hub, owner, slug, want, have, [])
    assert int(response.headers["content-length"]) == len(response.content)
    return response.content
