"""The clone's own HTTP/1.1 client (``musehub/client/http11.py``) against real servers on
loopback: uvicorn for the framings a hub answers with, bench's proxy to cut a body short, and
bare asyncio servers that close a kept-alive connection behind the client's back or show the
request's bytes."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from bench.proxy import running_proxy
from musehub.client.download import PackPart, RetryPolicy, stream_part
from musehub.client.http11 import HTTP11Client
from musehub.client.session import ConnectError, RemoteProtocolError, UnsupportedProtocol
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
async def http() -> AsyncIterator[HTTP11Client]:
    async with HTTP11Client() as client:
        yield client


async def test_bodies_by_length_and_chunked_on_one_kept_alive_connection(
    base_url: str, http: HTTP11Client
) -> None:
    first = (await http.get(f"{base_url}/port")).content
    assert (await http.get(f"{base_url}/big")).content == BIG
    async with http.stream("GET", f"{base_url}/chunked") as resp:
        assert resp.status_code == 200 and "content-length" not in resp.headers
        assert b"".join([c async for c in resp.aiter_bytes()]) == BIG
    echoed = await http.post(f"{base_url}/echo", content=b"x" * 70_000)
    assert echoed.content == b"x" * 70_000
    assert (await http.get(f"{base_url}/nothing")).status_code == 404
    assert (await http.get(f"{base_url}/port")).content == first  # the same connection throughout


async def test_a_response_left_unread_takes_its_connection_with_it(
    base_url: str, http: HTTP11Client
) -> None:
    async with http.stream("GET", f"{base_url}/big") as resp:
        await resp.aiter_bytes().__anext__()  # one chunk, then give up on it
    first = (await http.get(f"{base_url}/port")).content
    assert (await http.get(f"{base_url}/port")).content == first


async def test_a_body_cut_short_is_a_transport_error(base_url: str) -> None:
    port = int(base_url.rsplit(":", 1)[1])
    with running_proxy("127.0.0.1", port, cut_down_after=len(BIG) // 2) as proxy:
        async with HTTP11Client() as http:
            with pytest.raises(RemoteProtocolError, match="before the end"):
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
        async with HTTP11Client() as http:
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
        async with HTTP11Client(proxy=f"http://127.0.0.1:{proxy.port}") as http:
            first = (await http.get("http://hub.invalid:9/port")).content
            assert (await http.get("http://hub.invalid:9/big")).content == BIG
            assert (await http.get("http://hub.invalid:9/port")).content == first
    assert proxy.stats.connections == 1


async def test_nothing_listening_is_a_connect_error(http: HTTP11Client) -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(ConnectError):
        await http.get(f"http://127.0.0.1:{port}/")


async def test_a_kept_alive_connection_the_server_closed_is_replaced(
    http: HTTP11Client,
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
        assert (await http.get(url)).content == b"ok"
        assert (await http.get(url)).content == b"ok"
    finally:
        server.close()
    assert connections == 2


async def test_https_and_other_schemes(http: HTTP11Client) -> None:
    with pytest.raises(UnsupportedProtocol):
        await http.get("ftp://127.0.0.1/x")
    assert http._tls is None  # no TLS context for a clone that never meets https://


@contextlib.asynccontextmanager
async def _one_answer(answer: bytes) -> AsyncIterator[tuple[str, asyncio.Future[bytes]]]:
    """A server that reads one request's head (into the future) and sends ``answer``."""
    seen: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.set_result(await reader.readuntil(b"\r\n\r\n"))
        writer.write(answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", seen
    finally:
        server.close()


async def test_the_request_head_is_what_httpx_sent() -> None:
    """Host, the path and query percent-encoded as httpx did, the session's headers under the
    request's, no framing headers from the caller, identity bodies only."""
    async with (
        _one_answer(b"HTTP/1.1 204 No Content\r\n\r\n") as (url, seen),
        HTTP11Client(headers={"Accept": "a/b", "X-Both": "session"}) as http,
    ):
        answer = await http.get(
            f"{url}/al ice/x?sig=a%2Fb&v=é", headers={"X-Both": "request", "Connection": "x"}
        )
        lines = (await seen).decode("latin-1").split("\r\n")
    assert lines[0] == "GET /al%20ice/x?sig=a%2Fb&v=%C3%A9 HTTP/1.1"
    assert f"Host: {url.removeprefix('http://')}" in lines
    assert "Accept: a/b" in lines and "X-Both: request" in lines and "X-Both: session" not in lines
    assert "Accept-Encoding: identity" in lines
    assert not any(line.lower().startswith(("connection:", "content-length:")) for line in lines)
    assert answer.status_code == 204 and answer.content == b""


async def test_an_encoded_body_it_did_not_ask_for_is_refused() -> None:
    gzipped = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 1\r\n\r\nx"
    async with _one_answer(gzipped) as (url, _), HTTP11Client() as http:
        with pytest.raises(RemoteProtocolError, match="gzip-encoded"):
            await http.get(f"{url}/pack")


async def test_headers_are_found_in_any_case(base_url: str, http: HTTP11Client) -> None:
    async with http.stream("GET", f"{base_url}/big", headers={"Range": "bytes=0-9"}) as resp:
        assert resp.status_code == 206 and resp.headers.get("Content-Length") == "10"
        assert resp.headers.get("CONTENT-RANGE", "").startswith("bytes 0-9/")
        assert b"".join([c async for c in resp.aiter_bytes()]) == BIG[:10]
