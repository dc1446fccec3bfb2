"""A chain served in zstd (issue 15): each part's copy decodes to that part, the parts applied in
order hold the whole history, and a client that takes one URL gets the joined pack's copy."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import msgpack
from sqlalchemy.ext.asyncio import async_sessionmaker

from musehub.mpack.zstd_module import zstd_module
from musehub.services.encoded_packs import stored_copies
from tests.chains.history import History
from tests.chains.test_chain_e2e import BLOB, chain_of, download, fetch, fetch_inline, ids
from tests.prebuild.conftest import PrebuildHub
from tests.wire.helpers import call, decode


async def decoded(hub: PrebuildHub, url: str, size: int, sha256: str) -> bytes:
    """The bytes at `url`, checked against what the answer promised, decompressed."""
    data = await download(hub, url)
    assert len(data) == size and hashlib.sha256(data).hexdigest() == sha256
    return zstd_module().decompress(data)


async def copies_made(hub: PrebuildHub, keys: list[str]) -> None:
    sessions = async_sessionmaker(hub.engine, expire_on_commit=False)
    for _ in range(300):
        if set(await stored_copies(sessions, hub.storage, keys)) == set(keys):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the prebuild did not make the parts' zstd copies")


async def test_a_chain_in_zstd_decodes_to_its_parts(prebuild_hub: PrebuildHub) -> None:
    hub = prebuild_hub
    owner, slug, token = await hub.create_repo()
    history = History()
    files = {f"f{n}": bytes([n]) * BLOB for n in range(4)}
    old = history.commit([], files)
    await history.push(hub, owner, slug, token, "main", old)
    repo_id = decode(await call(hub.client, owner, slug, "refs"))["repo_id"]
    await chain_of(hub, repo_id, [old])
    tip = history.commit([old], {**files, "more": b"m" * BLOB})
    await history.push(hub, owner, slug, token, "main", tip)
    chain = await chain_of(hub, repo_id, [tip])
    assert len(chain.parts) == 2
    # The prebuild makes the parts' copies after it records them; a request that came while
    # it compresses one would be answered raw.
    await copies_made(hub, [p.mpack_id for p in chain.parts])

    answer: dict[str, Any] = decode(
        await fetch(hub, owner, slug, [tip], [], ["mpack-chain", "mpack-zstd"])
    )
    held: dict[str, set[str]] = {"commits": set(), "snapshots": set(), "objects": set()}
    for part, stored in zip(answer["mpack_parts"], chain.parts, strict=True):
        assert part["encoding"] == "zstd" and part["decoded_size"] == stored.size
        raw = await decoded(hub, part["url"], part["size"], part["sha256"])
        assert hashlib.sha256(raw).hexdigest() == stored.sha256  # the part itself
        for kind, found in ids(msgpack.unpackb(raw, raw=False)).items():
            held[kind] |= found
    full = ids(msgpack.unpackb(await fetch_inline(hub, owner, slug, [tip], []), raw=False))
    assert held == full

    # One URL: the chain joined into one pack, and that pack's copy.
    one = decode(await fetch(hub, owner, slug, [tip], [], ["mpack-url", "mpack-zstd"]))
    assert one["mpack_encoding"] == "zstd"
    joined = await decoded(hub, one["mpack_url"], one["mpack_size"], one["mpack_sha256"])
    assert len(joined) == one["mpack_decoded_size"]
    assert ids(msgpack.unpackb(joined, raw=False)) == full

    # A pull from the old tip: the top-up's copy, as a hit.
    response = await fetch(hub, owner, slug, [tip], [old], ["mpack-chain", "mpack-zstd"])
    assert response.headers["x-musehub-cache"] == "HIT"
    rest = decode(response)["mpack_parts"]
    assert [p["decoded_size"] for p in rest] == [chain.parts[-1].size]
    top_up = await decoded(hub, rest[0]["url"], rest[0]["size"], rest[0]["sha256"])
    assert ids(msgpack.unpackb(top_up, raw=False))["commits"] == {tip}
