"""MuseRemote speaks the protocol the way the muse client does."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import msgpack
import pytest

from musehub.client.errors import RemoteError
from musehub.client.wire import InlinePack, MPackURL, MuseRemote
from tests.client.fake_hub import BASE, FakeHub


def _remote(handler: Any, token: str | None = None) -> MuseRemote:
    return MuseRemote(BASE, token, transport=httpx.MockTransport(handler))


def _pack(value: Any, status: int = 200) -> httpx.Response:
    return httpx.Response(status, content=msgpack.packb(value, use_bin_type=True))


async def test_headers_body_and_token() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return _pack({"missing": ["a" * 64]})

    async with _remote(handler, token="s3cret") as remote:
        assert await remote.filter_objects(["a" * 64]) == ["a" * 64]
    req = seen[0]
    assert str(req.url) == f"{BASE}/filter-objects"
    assert req.headers["accept"] == "application/x-msgpack, application/json"
    assert req.headers["content-type"] == "application/x-msgpack"
    assert req.headers["authorization"] == "Bearer s3cret"
    assert msgpack.unpackb(req.content, raw=False) == {"object_ids": ["a" * 64]}


async def test_refs_defaults_and_non_map_answers() -> None:
    async with _remote(lambda r: _pack({"branch_heads": {"main": "c" * 64}})) as remote:
        refs = await remote.refs()
    assert refs.domain == "midi" and refs.default_branch == "main"
    assert refs.branch_heads == {"main": "c" * 64}
    async with _remote(lambda r: _pack([1, 2, 3])) as remote:
        assert (await remote.refs()).branch_heads == {}


async def test_errors_carry_the_servers_words() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(409, json={"detail": "branch main has moved on"})

    async with _remote(handler) as remote:
        with pytest.raises(RemoteError) as info:
            await remote.push({"commits": []}, "main")
    assert info.value.status == 409 and info.value.message == "branch main has moved on"
    assert str(info.value) == "HTTP 409: branch main has moved on"


async def test_redirects_are_refused() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(307, headers={"location": f"{BASE}/refs/"})

    async with _remote(handler) as remote:
        with pytest.raises(RemoteError, match="redirect") as info:
            await remote.refs()
    assert info.value.status == 307


async def test_invalid_msgpack_is_an_error() -> None:
    async with _remote(lambda r: httpx.Response(200, json={"repo_id": "x"})) as remote:
        with pytest.raises(RemoteError, match="invalid msgpack"):
            await remote.refs()


async def test_oversized_answers_are_refused() -> None:
    big = httpx.Response(200, headers={"content-length": str(65 * 1024 * 1024)}, content=b"")
    async with _remote(lambda r: big) as remote:
        with pytest.raises(RemoteError, match="cap"):
            await remote.refs()


def test_no_token_over_plain_http_to_a_remote_host() -> None:
    with pytest.raises(ValueError, match="https"):
        MuseRemote("http://fake_hub.example.com/a/b", "tok")
    MuseRemote("http://127.0.0.1:8000/a/b", "tok")  # loopback is fine
    MuseRemote("https://fake_hub.example.com/a/b", "tok")


async def test_push_objects_chunks_and_parallelism() -> None:
    sizes: list[int] = []
    in_flight = peak = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        objects = msgpack.unpackb(request.content, raw=False)["objects"]
        sizes.append(len(objects))
        return _pack({"stored": len(objects), "skipped": 0})

    objects = ({"object_id": f"{i:064x}", "content": b"x"} for i in range(2001))
    async with _remote(handler) as remote:
        counts = await remote.push_objects(objects)
    assert counts.stored == 2001 and counts.skipped == 0
    assert max(sizes) == 400 and sum(sizes) == 2001 and len(sizes) == 6
    assert peak == 4


async def test_push_objects_splits_by_bytes_too() -> None:
    sizes: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sizes.append(len(msgpack.unpackb(request.content, raw=False)["objects"]))
        return _pack({"stored": sizes[-1], "skipped": 0})

    objects = [{"object_id": f"{i:064x}", "content": b"x" * 1000} for i in range(10)]
    async with _remote(handler) as remote:
        await remote.push_objects(objects, max_body_bytes=3000)
    assert sizes == [2, 2, 2, 2, 2]


async def test_fetch_url_form(fake_hub: FakeHub) -> None:
    async with MuseRemote(BASE, transport=fake_hub.transport()) as remote:
        answer = await remote.fetch(sorted(fake_hub.heads.values()), [])
    assert isinstance(answer, MPackURL) and len(answer.parts) == 1
    assert answer.parts[0].url.startswith("http://blobs.test/_pack/") and answer.size > 0
    assert answer.branch_heads == fake_hub.heads
    assert fake_hub.seen[-1].body["capabilities"] == ["mpack-url"]


async def test_fetch_inline_form_is_spooled_to_a_file(fake_hub: FakeHub, tmp_path: Any) -> None:
    fake_hub.mpack_url = False
    async with MuseRemote(BASE, transport=fake_hub.transport()) as remote:
        answer = await remote.fetch(sorted(fake_hub.heads.values()), [], spool_dir=tmp_path)
    assert isinstance(answer, InlinePack)
    assert answer.path.parent == tmp_path and answer.path.stat().st_size == answer.size
    decoded = msgpack.unpackb(answer.path.read_bytes(), raw=False)
    assert len(decoded["commits"]) == 5 and decoded["branch_heads"] == fake_hub.heads


async def test_unreachable_remote_is_a_remote_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async with _remote(handler) as remote:
        with pytest.raises(RemoteError, match="cannot reach") as info:
            await remote.refs()
    assert info.value.status == 0


async def test_a_failed_chunk_fails_the_upload() -> None:
    calls = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        mine = calls
        await asyncio.sleep(0.01)
        return httpx.Response(413, text="too large") if mine == 2 else _pack({"stored": 1})

    objects = [{"object_id": f"{i:064x}", "content": b"x"} for i in range(3000)]
    async with _remote(handler) as remote:
        with pytest.raises(RemoteError, match="413"):
            await remote.push_objects(objects)
