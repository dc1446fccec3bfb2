"""The ceiling of the warm-answer benchmark: the cheapest POST endpoint this machine can serve.

A plain ASGI app that reads the request body and answers a fixed msgpack map, run under
uvicorn with the API's own server options (`api/server.py`: the slow-client protocol, the
connection cap, no access log) and as many workers. Whatever the hub's /fetch does,
it cannot answer faster than this on the same machine in the same run, so the warm answer's
rate is reported as a share of it."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import msgpack

from musehub.devstack.ports import free_port

ANSWER = msgpack.packb({"ok": True}, use_bin_type=True)
HEADERS = [(b"content-type", b"application/x-msgpack"), (b"content-length", b"%d" % len(ANSWER))]


async def app(scope: dict, receive, send) -> None:  # type: ignore[no-untyped-def,type-arg]
    if scope["type"] != "http":
        return  # lifespan: nothing to start
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": ANSWER})


def _serve(port: int, workers: int) -> None:
    """The child process: uvicorn with the API's server options (`musehub api` does the same)."""
    import uvicorn

    from api.server import server_options
    from musehub.settings import ApiSettings

    uvicorn.run(
        "bench.bare_asgi:app",
        host="127.0.0.1",
        port=port,
        workers=workers,
        log_level="warning",
        **server_options(ApiSettings()),
    )


@contextmanager
def serving(workers: int) -> Iterator[str]:
    """This app served as `musehub api` serves the hub; yields its base URL."""
    port = free_port()
    command = [
        sys.executable,
        "-c",
        f"from bench.bare_asgi import _serve; _serve({port}, {workers})",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.post(url, content=b"", timeout=1.0)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the bare ASGI endpoint did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(30)
