"""A small TCP proxy that models a real link: bandwidth, added latency, bytes counted.

    python -m bench.proxy --target 127.0.0.1:8000 --mbit 100 --latency-ms 20 [--port 8001]

Every connection to the proxy's port goes to ``target``. The link is one shared pipe per
direction, as a home or office line is: ``rate_bytes_per_s`` is the total of all connections
(so parallel GETs do not get more bandwidth than one), and every chunk is delivered
``latency_s`` after it was sent (a one-way delay, so a round trip costs twice that). Bytes are
counted per direction (``down``: target to client), which is what a benchmark reports as bytes
on the wire. ``cut_down_after`` is a fault drill for tests: the first connection whose
downstream bytes reach it is closed (both sides) at that point, a body ending early.

Standard library only (asyncio): the tests use it too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

CHUNK = 16 * 1024


@dataclass
class LinkStats:
    down: int = 0  # bytes target -> client
    up: int = 0  # bytes client -> target
    connections: int = 0


@dataclass
class _Shaper:
    """One direction of the link: a byte clock shared by every connection."""

    rate: float | None
    free_at: float = 0.0  # when the link finishes sending what it was given so far

    def departure(self, nbytes: int, now: float) -> float:
        if self.rate is None:
            return now
        self.free_at = max(self.free_at, now) + nbytes / self.rate
        return self.free_at


@dataclass
class ThrottlingProxy:
    target_host: str
    target_port: int
    rate_bytes_per_s: float | None = None
    latency_s: float = 0.0
    host: str = "127.0.0.1"
    port: int = 0  # 0: a free port, read it after start
    cut_down_after: int | None = None
    stats: LinkStats = field(default_factory=LinkStats)
    cuts: int = 0

    def __post_init__(self) -> None:
        self._down = _Shaper(self.rate_bytes_per_s)
        self._up = _Shaper(self.rate_bytes_per_s)
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in self._connections:
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)

    def reset(self) -> None:
        self.stats = LinkStats()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.stats.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)
        try:
            target_r, target_w = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            client_w.close()
            return
        cut = asyncio.Event()
        try:
            await asyncio.gather(
                self._pump(client_r, target_w, self._up, "up", cut),
                self._pump(target_r, client_w, self._down, "down", cut),
                return_exceptions=True,
            )
        finally:
            for writer in (client_w, target_w):
                writer.close()

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        shaper: _Shaper,
        direction: str,
        cut: asyncio.Event,
    ) -> None:
        """Copy one direction, each chunk delivered at its departure time plus the latency."""
        # Bounded: a slow link pushes back on the sender, as TCP would (1 MiB in flight).
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(maxsize=64)
        loop = asyncio.get_running_loop()

        async def deliver() -> None:
            while (item := await queue.get()) is not None:
                due, data = item
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                writer.write(data)
                await writer.drain()

        delivery = asyncio.create_task(deliver())
        try:
            while not cut.is_set():
                data = await reader.read(CHUNK)
                if not data:
                    break
                if direction == "down" and self.cut_down_after is not None:
                    room = self.cut_down_after - self.stats.down
                    if room <= len(data):
                        data = data[: max(room, 0)]
                        self.cut_down_after = None  # once
                        self.cuts += 1
                        cut.set()
                if direction == "down":
                    self.stats.down += len(data)
                else:
                    self.stats.up += len(data)
                now = loop.time()
                await queue.put((shaper.departure(len(data), now) + self.latency_s, data))
        except BaseException:
            delivery.cancel()  # the proxy is stopping, or the peer is gone
            raise
        await queue.put(None)
        with contextlib.suppress(Exception):
            await delivery  # what was read before a cut or the end still arrives
        # On a cut the client sees the body end early. A FIN rather than a reset: a reset may
        # discard bytes the client has not read yet, so the bytes counted would not be exact.
        with contextlib.suppress(Exception):
            writer.write_eof()


@contextlib.contextmanager
def running_proxy(
    target_host: str,
    target_port: int,
    *,
    mbit: float | None = None,
    latency_ms: float = 0.0,
    cut_down_after: int | None = None,
    port: int = 0,
) -> Iterator[ThrottlingProxy]:
    """The proxy on its own event loop in a thread, for code that is not async (benchmarks
    timing child processes, tests of a client with its own loop)."""
    proxy = ThrottlingProxy(
        target_host,
        target_port,
        rate_bytes_per_s=mbit * 1e6 / 8 if mbit else None,
        latency_s=latency_ms / 1000,
        cut_down_after=cut_down_after,
        port=port,
    )
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(proxy.start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, name="throttling-proxy", daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("the throttling proxy did not start")
    try:
        yield proxy
    finally:
        asyncio.run_coroutine_threadsafe(proxy.stop(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.proxy",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--target", required=True, help="host:port to forward to")
    parser.add_argument("--mbit", type=float, help="bandwidth of the link (Mbit/s, shared)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="one-way delay added")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    host, _, port = args.target.rpartition(":")
    with running_proxy(
        host, int(port), mbit=args.mbit, latency_ms=args.latency_ms, port=args.port
    ) as proxy:
        print(f"proxy on {proxy.address} -> {args.target}; Ctrl-C stops", flush=True)
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            print(f"bytes down {proxy.stats.down}, up {proxy.stats.up}")


if __name__ == "__main__":
    main()
