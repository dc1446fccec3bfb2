"""The clone's own HTTP/1.1 transport (``musehub/client/http11.py``) against real servers on
loopback: uvicorn for the framings a hub answers with, bench's proxy to cut a body short, and a
bare asyncio server that closes a kept-alive connection behind the client's back."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from bench.proxy import running_proxy
from musehub.client.download import PackPart, RetryPolicy, stream_part
from musehub.client.http11 import AsyncioHTTPTransport
from tests.storage.http_server import serving

BIG = os.urandom(3 * 1024 * 1024 + 17)


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """``/port``: the client's port (one per connection); ``/big``: 3 MiB with a length (or the
    ``Range`` asked for); ``/chunked``: the same, chunked; ``/echo``: the request's body back."""
    path = scope["path"]
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if path == "/chunked":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for start in range(0, len(BIG), 1_000_003):
            piece = BIG[start : start + 1_000_003]
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    payload = {
        "/port": str(scope["client"][1]).encode(),
        "/big": BIG,
        "/echo": body,
    }.get(path, b"")
    status = 200 if path in ("/port", "/big", "/echo") else 404
    headers = []
    asked = dict(scope["headers"]).get(b"range", b"").removeprefix(b"bytes=")
    if path == "/big" and asked:
        start, end = (int(n) for n in asked.split(b"-"))
        payload, status = BIG[start : end + 1], 206
        headers.append((b"content-range", f"bytes {start}-{end}/{len(BIG)}".encode()))
    headers.append((b"content-length", str(len(payload)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with serving(_app) as url:
        yield url


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=AsyncioHTTPTransport()) as client:
        yield client


async def test_bodies_by_length_and_chunked_on_one_kept_alive_connection(
    base_url: str, http: httpx.AsyncClient
) -> None:
    first = (await http.get(f"{base_url}/port")).text
    assert (await http.get(f"{base_url}/big")).content == BIG
    async with http.stream("GET", f"{base_url}/chunked") as resp:
        assert resp.status_code == 200 and "content-length" not in resp.headers
        assert b"".join([c async for c in resp.aiter_bytes()]) == BIG
    echoed = await http.post(f"{base_url}/echo", content=b"x" * 70_000)
    assert echoed.content == b"x" * 70_000
    assert (await http.get(f"{base_url}/nothing")).status_code == 404
    assert (await http.get(f"{base_url}/port")).text == first  # the same connection throughout


async def test_a_response_left_unread_takes_its_connection_with_it(
    base_url: str, http: httpx.AsyncClient
) -> None:
    async with http.stream("GET", f"{base_url}/big") as resp:
        await resp.aiter_bytes().__anext__()  # one chunk, then give up on it
    first = (await http.get(f"{base_url}/port")).text
    assert (await http.get(f"{base_url}/port")).text == first


async def test_a_body_cut_short_is_a_transport_error(base_url: str) -> None:
    port = int(base_url.rsplit(":", 1)[1])
    with running_proxy("127.0.0.1", port, cut_down_after=len(BIG) // 2) as proxy:
        async with httpx.AsyncClient(transport=AsyncioHTTPTransport()) as http:
            with pytest.raises(httpx.RemoteProtocolError, match="before the end"):
                await http.get(f"http://127.0.0.1:{proxy.port}/big")
            again = await http.get(f"http://127.0.0.1:{proxy.port}/big")  # cut once
    assert again.content == BIG and proxy.stats.connections == 2


async def test_a_pack_download_cut_short_resumes_with_a_range(base_url: str) -> None:
    """The failure is one ``stream_part`` retries: it goes on from the byte it reached."""
    got = bytearray()

    async def write(data: bytes) -> None:
        got.extend(data)

    port = int(base_url.rsplit(":", 1)[1])
    with running_proxy("127.0.0.1", port, cut_down_after=len(BIG) // 3) as proxy:
        async with httpx.AsyncClient(transport=AsyncioHTTPTransport()) as http:
            part = PackPart(f"http://127.0.0.1:{proxy.port}/big", len(BIG), _sha256(BIG))
            await stream_part(http, part, write, policy=RetryPolicy(first_backoff_s=0.01))
    assert bytes(got) == BIG and proxy.cuts == 1
    assert proxy.stats.down < len(BIG) + 4096  # the first third crossed the link once


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


async def test_through_an_http_proxy_every_request_goes_to_the_proxy(base_url: str) -> None:
    """As ``HTTP_PROXY`` sends them (the clone benchmark's link is such a proxy's port): to the
    proxy, on one kept-alive connection, whatever the URL's host."""
    port = int(base_url.rsplit(":", 1)[1])
    with running_proxy("127.0.0.1", port) as proxy:
        transport = AsyncioHTTPTransport(proxy=f"http://127.0.0.1:{proxy.port}")
        async with httpx.AsyncClient(transport=transport) as http:
            first = (await http.get("http://hub.invalid:9/port")).text
            assert (await http.get("http://hub.invalid:9/big")).content == BIG
            assert (await http.get("http://hub.invalid:9/port")).text == first
    assert proxy.stats.connections == 1


async def test_nothing_listening_is_a_connect_error(http: httpx.AsyncClient) -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(httpx.ConnectError):
        await http.get(f"http://127.0.0.1:{port}/")


async def test_a_kept_alive_connection_the_server_closed_is_replaced(
    http: httpx.AsyncClient,
) -> None:
    """A server that answers once and then closes (as uvicorn does after its keep-alive
    timeout): the next request goes on a new connection instead of failing."""
    connections = 0

    async def answer_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer_once, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    try:
        assert (await http.get(url)).text == "ok"
        assert (await http.get(url)).text == "ok"
    finally:
        server.close()
    assert connections == 2


async def test_https_and_other_schemes(http: httpx.AsyncClient) -> None:
    with pytest.raises(httpx.UnsupportedProtocol):
        await http.get("ftp://127.0.0.1/x")
    transport = AsyncioHTTPTransport()
    assert transport._tls is None  # no TLS context for a clone that never meets https://
    await transport.aclose()
