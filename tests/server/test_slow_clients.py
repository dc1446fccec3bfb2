"""Slow clients against the hub served by a real uvicorn (issue 12, item 3): headers sent a
byte at a time get 408 at the header timeout, a connection that sends nothing is closed, a body
that trickles is cut off, while ordinary requests, keep-alive and a slow-but-honest 1 MiB upload
still work. Limits: tests/server/conftest.py (headers 1 s; bodies 256 KiB/s after 0.5 s)."""

from __future__ import annotations

import asyncio
import http.client
import select
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from api.server import server_options
from musehub.settings import ApiSettings
from tests.server.conftest import TEST_LIMITS, ServedHub, bound_socket, run_server, serve_hub

MiB = 1 << 20


def read_until_closed(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything the server sends until it closes the connection."""
    sock.settimeout(timeout)
    received = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk


def upload_request(hub: ServedHub, key: str, size: int) -> tuple[str, bytes]:
    """A presigned PUT of `size` bytes: its path and its request head."""
    url = hub.storage.signer.presign("PUT", key, 600)
    path = url.removeprefix(hub.base_url)
    head = f"PUT {path} HTTP/1.1\r\nHost: hub\r\nContent-Length: {size}\r\n\r\n".encode()
    return path, head


def trickle(sock: socket.socket, data: bytes, every: float) -> tuple[bytes, float]:
    """Send `data` a byte every `every` seconds until the server answers or closes; return what
    it sent and when, in seconds since the first byte."""
    start = time.monotonic()
    for byte in data:
        try:
            sock.sendall(bytes([byte]))
        except OSError:  # closed under us
            break
        readable, _, _ = select.select([sock], [], [], every)
        if readable:
            break
    return read_until_closed(sock), time.monotonic() - start


def test_headers_sent_a_byte_at_a_time_get_408_at_the_header_timeout(
    served_hub: ServedHub,
) -> None:
    with served_hub.connect() as sock:
        request = b"GET /health/live HTTP/1.1\r\nHost: hub\r\nX-Slow: " + b"a" * 400
        answer, elapsed = trickle(sock, request, every=0.05)
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer
    assert b"connection: close\r\n" in answer
    assert answer.endswith(b"the request headers took longer than 1 s; send them at once\n")
    assert 0.9 <= elapsed < 2.0  # ~the timeout, though a byte arrived every 50 ms


def test_a_connection_that_sends_nothing_is_closed(served_hub: ServedHub) -> None:
    with served_hub.connect() as sock:
        start = time.monotonic()
        answer = read_until_closed(sock)
        elapsed = time.monotonic() - start
    assert answer == b""  # nothing was asked: closed without an answer
    assert 0.9 <= elapsed < 2.0


def test_requests_on_a_kept_alive_connection_each_get_the_full_header_time(
    served_hub: ServedHub,
) -> None:
    connection = http.client.HTTPConnection(served_hub.host, served_hub.port, timeout=10)
    try:
        for _ in range(3):  # 2.1 s on one connection: the deadline restarts after each answer
            connection.request("GET", "/health/live")
            response = connection.getresponse()
            assert (response.status, response.read()) == (200, b'{"status":"ok"}')
            time.sleep(0.7)
    finally:
        connection.close()


def test_a_trickling_body_is_cut_off_and_nothing_is_stored(served_hub: ServedHub) -> None:
    _, head = upload_request(served_hub, "slow/trickle", 100_000)
    with served_hub.connect() as sock:
        sock.sendall(head)
        answer, elapsed = trickle(sock, b"x" * 100_000, every=0.05)
    assert answer == b""  # closed: the app saw a disconnect, nothing was answered
    assert 0.4 <= elapsed < 2.0  # the grace (0.5 s), and a check at most 0.5 s later
    assert not (served_hub.storage.root / "slow" / "trickle").exists()


def test_a_slow_but_honest_1_mib_upload_is_stored(served_hub: ServedHub) -> None:
    data = bytes(range(256)) * (MiB // 256)
    _, head = upload_request(served_hub, "slow/honest", len(data))
    chunk, every = 32 * 1024, 1 / 16  # 512 KiB/s: twice the minimum, about 2 s in all
    with served_hub.connect() as sock:
        sock.sendall(head)
        start = time.monotonic()
        for i, offset in enumerate(range(0, len(data), chunk)):
            time.sleep(max(0.0, start + i * every - time.monotonic()))
            sock.sendall(data[offset : offset + chunk])
        sock.settimeout(10)
        answer = sock.recv(65536)
    assert time.monotonic() - start > 1.5
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer
    assert (served_hub.storage.root / "slow" / "honest").read_bytes() == data


def test_time_the_app_is_not_reading_is_not_held_against_the_body() -> None:
    """An app that waits 1.5 s before reading (the server stops reading once 64 KiB wait for
    it): a client that sent its 1 MiB at once is not cut off for the server's own pause."""

    async def read_late(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await asyncio.sleep(1.5)
        size, more = 0, True
        while more:
            message = await receive()
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
        body = str(size).encode()
        length = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": length})
        await send({"type": "http.response.body", "body": body})

    sock = bound_socket()
    port = sock.getsockname()[1]
    options = {**server_options(ApiSettings(**TEST_LIMITS)), "lifespan": "off"}
    with run_server(uvicorn.Config(read_late, log_level="warning", **options), sock):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            head = f"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {MiB}\r\n\r\n".encode()
            sender = threading.Thread(target=client.sendall, args=(head + b"y" * MiB,))
            sender.start()
            answer = client.recv(65536)
            sender.join()
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer
    assert answer.endswith(str(MiB).encode())


def test_connections_beyond_the_cap_are_answered_503(tmp_path: Path) -> None:
    with serve_hub(tmp_path, max_connections=3) as hub:
        idle = [hub.connect() for _ in range(3)]
        time.sleep(0.2)  # accepted by the server
        try:
            with hub.connect() as sock:
                sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: hub\r\n\r\n")
                assert read_until_closed(sock).startswith(b"HTTP/1.1 503 ")
        finally:
            for sock in idle:
                sock.close()
        time.sleep(0.2)
        with hub.connect() as sock:
            sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n")
            assert read_until_closed(sock).startswith(b"HTTP/1.1 200 OK\r\n")


@pytest.mark.parametrize("setting", ["header_timeout_seconds", "min_body_bytes_per_second"])
def test_limits_must_be_positive(setting: str) -> None:
    with pytest.raises(ValueError):
        ApiSettings.model_validate({setting: 0})
