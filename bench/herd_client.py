"""A herd of HTTP/1.1 clients sending one POST at the same moment, in a process of its own.

    python -m bench.herd_client URL BODY_FILE CLIENTS [HEADER: VALUE ...]

prints one JSON object: `{"answers": [[status, cache header, seconds], ...]}`. Each client holds
its own keep-alive connection, opened and warmed beforehand with a `GET /health`; then every
request is written before any answer is read, and each is timed from its own write to the last
byte of its answer. Standard library only, raw sockets, minimal parsing: the herd measured in
scenario 7 used 50 httpx clients in the bench's own process, whose client-side CPU (tens of
milliseconds per answer on a loaded machine, all on one event loop) was most of the p50 it
reported; this process spends microseconds per answer, so the number is the hub's."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from urllib.parse import urlsplit


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, str]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status, headers.get("x-musehub-cache", "-")


async def herd(url: str, body: bytes, clients: int, extra: list[str]) -> list[list[object]]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    more = "".join(f"{h}\r\n" for h in extra)
    warm = f"GET /health HTTP/1.1\r\nHost: {host}:{port}\r\n{more}\r\n".encode()
    post = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{more}Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    pool = [await asyncio.open_connection(host, port) for _ in range(clients)]
    for _, writer in pool:
        writer.write(warm)
    for reader, _ in pool:
        await _read_answer(reader)
    began = [0.0] * clients
    for n, (_, writer) in enumerate(pool):  # every request leaves before any answer is read
        began[n] = time.perf_counter()
        writer.write(post)

    async def one(n: int) -> list[object]:
        reader, _ = pool[n]
        try:
            status, cache = await _read_answer(reader)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            return [f"error {type(exc).__name__}", "-", time.perf_counter() - began[n]]
        return [status, cache, time.perf_counter() - began[n]]

    answers = await asyncio.gather(*(one(n) for n in range(clients)))
    for _, writer in pool:
        writer.close()
    return list(answers)


def main(argv: list[str]) -> int:
    url, body_file, clients, *extra = argv
    with open(body_file, "rb") as f:
        body = f.read()
    answers = asyncio.run(herd(url, body, int(clients), extra))
    print(json.dumps({"answers": answers}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
