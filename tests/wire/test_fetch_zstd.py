"""`mpack-zstd` against the real API (PostgreSQL, local storage): every capability combination
round trips, only URL forms of recorded packs are ever compressed, and the inline answer a
client without URL capabilities gets is byte for byte what it was."""

from __future__ import annotations

import hashlib
import io
from typing import Any

import msgpack
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from musehub.db.models import MPackEncoding
from musehub.mpack.reader import read_mpack
from musehub.mpack.zstd_module import zstd_module
from tests.conftest import Hub
from tests.hub_storage import key_of_url
from tests.mpack.helpers import VECTOR_HEADS, load_vector
from tests.wire.helpers import call, decode, push_vector

VECTOR = load_vector()
MAIN, CHORUS = VECTOR_HEADS["main"], VECTOR_HEADS["chorus"]
WANT = [MAIN, CHORUS]


async def fetch(
    hub: Hub, owner: str, slug: str, caps: list[str], have: tuple[str, ...] = ()
) -> Any:
    body = {"want": WANT, "have": list(have), "capabilities": caps}
    return await call(hub.client, owner, slug, "fetch", body)


async def download(hub: Hub, url: str, size: int, sha256: str) -> bytes:
    response = await hub.client.get(url.removeprefix(hub.settings.public_base_url))
    assert response.status_code == 200
    assert len(response.content) == size
    assert hashlib.sha256(response.content).hexdigest() == sha256
    return response.content


def holds_the_vector(raw_pack: bytes) -> None:
    pack = read_mpack(io.BytesIO(raw_pack))
    assert {c["commit_id"] for c in pack.commits} == {c["commit_id"] for c in VECTOR["commits"]}
    assert {o["object_id"]: o["content"] for o in pack.objects} == {
        o["object_id"]: o["content"] for o in VECTOR["objects"]
    }


async def copies_of(hub: Hub, mpack_id: str) -> int:
    async with AsyncSession(hub.engine) as session:
        count = await session.scalar(select(func.count()).where(MPackEncoding.mpack_id == mpack_id))
    return int(count or 0)


async def test_url_and_zstd_gives_the_compressed_copy_of_the_raw_pack(hub: Hub) -> None:
    owner, slug, _, _ = await push_vector(hub, branches=("main", "chorus"))
    raw_answer = decode(await fetch(hub, owner, slug, ["mpack-url"]))
    assert "mpack_encoding" not in raw_answer and "mpack_decoded_size" not in raw_answer
    raw = await download(
        hub, raw_answer["mpack_url"], raw_answer["mpack_size"], raw_answer["mpack_sha256"]
    )
    holds_the_vector(raw)

    zstd_answer = decode(await fetch(hub, owner, slug, ["mpack-url", "mpack-zstd"]))
    assert zstd_answer["mpack_encoding"] == "zstd"
    assert zstd_answer["mpack_decoded_size"] == len(raw)
    assert zstd_answer["branch_heads"] == raw_answer["branch_heads"]
    served = await download(
        hub, zstd_answer["mpack_url"], zstd_answer["mpack_size"], zstd_answer["mpack_sha256"]
    )
    assert served[:4] == b"\x28\xb5\x2f\xfd"  # a zstd frame
    assert zstd_module().decompress(served) == raw

    again = decode(await fetch(hub, owner, slug, ["mpack-zstd", "mpack-url"]))
    assert again["mpack_sha256"] == zstd_answer["mpack_sha256"]  # one copy, made once
    raw_key = key_of_url(hub.settings, raw_answer["mpack_url"])
    assert await copies_of(hub, raw_key) == 1


async def test_chain_and_zstd_gives_each_part_compressed(hub: Hub) -> None:
    owner, slug, _, _ = await push_vector(hub, branches=("main", "chorus"))
    raw_answer = decode(await fetch(hub, owner, slug, ["mpack-chain"]))
    assert all(set(p) == {"url", "size", "sha256"} for p in raw_answer["mpack_parts"])
    answer = decode(await fetch(hub, owner, slug, ["mpack-chain", "mpack-zstd"]))
    assert len(answer["mpack_parts"]) == len(raw_answer["mpack_parts"]) >= 1
    for part, raw_part in zip(answer["mpack_parts"], raw_answer["mpack_parts"], strict=True):
        assert part["encoding"] == "zstd" and part["decoded_size"] == raw_part["size"]
        served = await download(hub, part["url"], part["size"], part["sha256"])
        raw = await download(hub, raw_part["url"], raw_part["size"], raw_part["sha256"])
        assert zstd_module().decompress(served) == raw
    # The one-pack fields of the chain form stay the raw pack's.
    assert "mpack_encoding" not in answer
    assert answer["mpack_sha256"] == raw_answer["mpack_sha256"]


async def test_a_client_without_url_capabilities_gets_the_same_inline_bytes(hub: Hub) -> None:
    """`mpack-zstd` alone changes nothing: the inline answer is what muse 0.1.5 reads."""
    owner, slug, _, _ = await push_vector(hub, branches=("main", "chorus"))
    await fetch(hub, owner, slug, ["mpack-url", "mpack-zstd"])  # a copy exists now
    legacy = await fetch(hub, owner, slug, [])
    zstd_only = await fetch(hub, owner, slug, ["mpack-zstd"])
    assert legacy.status_code == zstd_only.status_code == 200
    assert zstd_only.content == legacy.content
    assert int(legacy.headers["content-length"]) == len(legacy.content)
    answer = msgpack.unpackb(legacy.content, raw=False)
    assert set(answer) == {"commits", "snapshots", "objects", "branch_heads"}
    holds_the_vector(msgpack.packb({k: answer[k] for k in ("commits", "snapshots", "objects")}))


async def test_a_pack_built_for_one_request_is_served_raw(hub: Hub) -> None:
    owner, slug, _, _ = await push_vector(hub, branches=("main", "chorus"))
    by_id = {c["commit_id"]: c for c in VECTOR["commits"]}
    have = [by_id[MAIN]["parent_commit_id"]]
    response = await fetch(hub, owner, slug, ["mpack-url", "mpack-zstd"], have=tuple(have))
    assert response.headers["x-musehub-cache"] == "UNCACHED"
    answer = decode(response)
    assert "mpack_encoding" not in answer
    await download(hub, answer["mpack_url"], answer["mpack_size"], answer["mpack_sha256"])
