"""The throttling proxy the clone benchmark and the resume tests go through
(``bench/proxy.py``) holds its bandwidth and latency and counts what it forwards."""

from __future__ import annotations

import asyncio
import time

from bench.proxy import ThrottlingProxy

PAYLOAD = b"x" * 200_000


async def _echo_server() -> asyncio.Server:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(5)
        writer.write(PAYLOAD)
        await writer.drain()
        writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0)


async def _fetch(proxy: ThrottlingProxy) -> tuple[bytes, float]:
    began = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(b"hello")
    data = await reader.read()
    writer.close()
    return data, time.perf_counter() - began


async def test_bandwidth_latency_and_byte_counts() -> None:
    server = await _echo_server()
    port = server.sockets[0].getsockname()[1]
    # 8 Mbit/s = 1 MB/s: 200 kB take 0.2 s; 50 ms each way adds 0.1 s or more.
    proxy = ThrottlingProxy("127.0.0.1", port, rate_bytes_per_s=1e6, latency_s=0.05)
    await proxy.start()
    try:
        data, seconds = await _fetch(proxy)
    finally:
        await proxy.stop()
        server.close()
    assert data == PAYLOAD
    assert 0.3 <= seconds < 3.0
    assert (proxy.stats.down, proxy.stats.up, proxy.stats.connections) == (len(PAYLOAD), 5, 1)


async def test_a_cut_drops_the_connection_at_the_byte() -> None:
    server = await _echo_server()
    port = server.sockets[0].getsockname()[1]
    proxy = ThrottlingProxy("127.0.0.1", port, cut_down_after=70_000)
    await proxy.start()
    try:
        data, _ = await _fetch(proxy)
        again, _ = await _fetch(proxy)  # the cut happens once
    finally:
        await proxy.stop()
        server.close()
    assert data == PAYLOAD[:70_000] and again == PAYLOAD and proxy.cuts == 1
