"""The clone's (and the pull's) first request sent early (``musehub/client/early.py``): against a
bare server on loopback that records every connection and the bytes of every request, it is the
very request the client would have sent, answered once, on one connection; any other request,
or nothing listening, and the client goes on as it would have without it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import msgpack
import pytest

from bench.proxy import running_proxy
from musehub.cli.pull import send_early
from musehub.client.clone_request import CAPABILITIES, ORIGIN
from musehub.client.early import send_head_set_request
from musehub.client.errors import RemoteError
from musehub.client.layout import MuseDir
from musehub.client.pull import pull
from musehub.client.wire import MuseRemote

HEADS = {"main": "a" * 64}
ANSWER = {
    "repo_id": "r1",
    "domain": "code",
    "default_branch": "main",
    "branch_heads": HEADS,
    "mpack_url": "http://blobs.invalid/p",
    "mpack_size": 10,
    "mpack_sha256": "b" * 64,
    "expires_at": "2099-01-01T00:00:00+00:00",
}


@dataclass
class Recorder:
    """A bare HTTP/1.1 server: the bytes of each request, and how many connections came."""

    port: int = 0
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                self.requests.append(head + await reader.readexactly(length))
                body = msgpack.packb(ANSWER)
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/x-msgpack\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
        writer.close()


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    found = Recorder()
    server = await asyncio.start_server(found.serve, "127.0.0.1", 0)
    found.port = server.sockets[0].getsockname()[1]
    async with server:
        yield found


@pytest.fixture(autouse=True)
def no_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


async def _head_set_answer(url: str, early: object = None) -> object:
    async with MuseRemote(url, early=early) as remote:  # type: ignore[arg-type]
        return await remote.head_set_answer(CAPABILITIES)


async def test_the_early_request_is_the_one_the_client_sends_and_is_answered_once(
    recorder: Recorder,
) -> None:
    url = f"http://127.0.0.1:{recorder.port}/alice/song"
    alone = await _head_set_answer(url)
    early = send_head_set_request(url, CAPABILITIES)
    assert early is not None
    together = await _head_set_answer(url, early)
    assert together == alone and together is not None
    # The same bytes, each on a connection of its own: the early one was not sent twice.
    assert recorder.requests[0] == recorder.requests[1] and len(recorder.requests) == 2
    assert recorder.connections == 2


async def test_through_an_http_proxy_it_goes_to_the_proxy_in_absolute_form(
    recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_proxy("127.0.0.1", recorder.port) as proxy:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
        url = "http://hub.invalid:9/alice/song"
        early = send_head_set_request(url, CAPABILITIES)
        assert early is not None and early.address == ("127.0.0.1", proxy.port)
        assert await _head_set_answer(url, early) is not None
    assert recorder.requests[0].startswith(b"POST http://hub.invalid:9/alice/song/fetch HTTP/1.1")
    assert len(recorder.requests) == 1 and proxy.stats.connections == 1


async def test_another_first_request_closes_the_early_one_and_goes_itself(
    recorder: Recorder,
) -> None:
    url = f"http://127.0.0.1:{recorder.port}/alice/song"
    early = send_head_set_request(url, CAPABILITIES)
    async with MuseRemote(url, early=early) as remote:
        refs = await remote.refs()  # not the request sent early
    assert refs.branch_heads == HEADS
    await asyncio.sleep(0.05)  # the server reads the early request, then the closed socket
    assert [r.split(b" ", 2)[:2] for r in recorder.requests] == [
        [b"POST", b"/alice/song/fetch"],
        [b"GET", b"/alice/song/refs"],
    ]
    assert recorder.connections == 2


async def test_nothing_listening_is_reported_by_the_client_as_without_it() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/alice/song"
    early = send_head_set_request(url, CAPABILITIES)
    with pytest.raises(RemoteError, match="cannot reach"):
        await _head_set_answer(url, early)


def test_not_sent_where_the_client_would_not_send_it(monkeypatch: pytest.MonkeyPatch) -> None:
    assert send_head_set_request("https://hub.example/alice/song", CAPABILITIES) is None
    monkeypatch.setenv("HTTP_PROXY", "socks5://127.0.0.1:1080")  # httpx's to speak
    assert send_head_set_request("http://127.0.0.1:9/alice/song", CAPABILITIES) is None


async def test_a_pull_sends_its_first_request_early_with_its_tips(
    recorder: Recorder, tmp_path: Path
) -> None:
    """`musehub pull` reads its tips before loading the client and sends the request they make:
    the pull claims it (one request, one connection), so the bytes were the same."""
    url = f"http://127.0.0.1:{recorder.port}/alice/song"
    repo = MuseDir(tmp_path)
    repo.init(repo_id="r1", domain="code", default_branch="main")
    (head,) = HEADS.values()
    repo.write_commit({"commit_id": head})
    repo.set_branch("main", head)
    repo.set_remote_head(ORIGIN, "main", head)
    repo.write_remote_config(ORIGIN, url, "main")
    early = send_early(tmp_path)
    assert early is not None
    result = await pull(tmp_path, progress=False, early=early)
    assert result.outcome == "up to date"
    assert len(recorder.requests) == 1 and recorder.connections == 1
    assert msgpack.unpackb(recorder.requests[0].split(b"\r\n\r\n", 1)[1])["have"] == [head]
