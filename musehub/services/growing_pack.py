"""A pack being built, read while it is written: how a cold clone's answer starts flowing before
its build ends.

The synchronous build writes its pack to a temp file and then moves it into storage. A legacy
client (inline answer) need not wait for that: once the build has run for a moment, the route
streams the file as it grows, behind a proxy that gives up on an origin silent for 100 s
(Cloudflare) or on a socket silent for 60 s (the muse 0.1.5 client). The pack is written in
order and never rewritten, so every byte read is final.

The build opens the file for us the moment it creates it (`attach`): the descriptor stays valid
after the build moves or deletes the file. The build's outcome is handed over with `settle`; the
reader ends once it has read everything and the build succeeded, and raises the build's error
otherwise, which cuts the response short: the client sees a failed transfer, never a wrong pack.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator
from pathlib import Path

READ_CHUNK = 1 << 20
# How often a reader that caught up with the writer looks again (it also wakes when the build
# ends).
POLL_SECONDS = 0.02


class GrowingPack:
    def __init__(self) -> None:
        self._fd: int | None = None
        self._attached = asyncio.Event()
        self._settled: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def attach(self, path: Path) -> None:
        """Called by the build right after it created its file, before it writes to it."""
        self._fd = os.open(path, os.O_RDONLY)
        self._attached.set()

    def settle(self, size: int | None, error: BaseException | None = None) -> None:
        """The build is over: it wrote `size` bytes, or it failed with `error`."""
        if self._settled.done():
            return
        if error is not None:
            self._settled.set_exception(error)
        else:
            self._settled.set_result(size or 0)
        self._attached.set()  # a build that failed before its file existed ends the wait too

    async def wait_attached(self) -> None:
        await self._attached.wait()

    def close(self) -> None:
        """Nobody will read it (the build ended before the answer was sent)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._settled.done() and not self._settled.cancelled():
            self._settled.exception()  # retrieved: no "exception never retrieved" warning

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        """The pack's bytes from the first, as they are written; ends when the build has
        succeeded and all of them were read."""
        fd = self._fd
        if fd is None:
            raise RuntimeError("the build has not created its pack file")
        offset = 0
        try:
            while True:
                # Seen before the read: once the build is over, a read that finds nothing
                # more means the end, never bytes not yet written.
                over = self._settled.done()
                chunk = os.pread(fd, READ_CHUNK, offset)  # page-cache reads: microseconds
                if chunk:
                    offset += len(chunk)
                    yield chunk
                    continue
                if over:
                    size = self._settled.result()  # raises the build's error
                    if offset != size:
                        raise OSError(f"read {offset} bytes of a {size}-byte pack")
                    return
                await asyncio.wait({self._settled}, timeout=POLL_SECONDS)
        finally:
            self.close()
