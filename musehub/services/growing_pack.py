"""A pack being built, read while it is written: how a cold clone's answer starts flowing before
its build ends.

The synchronous build writes its pack to a temp file and then moves it into storage. A client
of an inline answer need not wait for that: once the build has run for a moment, the route
streams the file as it grows, behind a proxy that gives up on an origin silent for 100 s
(Cloudflare) or on a socket silent for 60 s (the muse 0.1.5 client). The pack is written front
to back and never rewritten, so every byte read is final.

The build opens the file for us the moment it creates it (`attach`): the descriptor stays valid
after the build moves or deletes the file. Each client reads through a `reader()` of its own (a
duplicate of that descriptor), so the requests that wait for the same build in this process
stream the one file. The build says when the pack is whole (`written`, before its upload and
record: the client need not wait for those, its bytes are complete and checked) and how it
ended (`settle`). A reader ends once it has read the whole pack, and raises the build's error if
the build failed before that, which cuts the response short: the client sees a failed
transfer, never a wrong pack.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator
from pathlib import Path

READ_CHUNK = 1 << 20
# How often a reader that caught up with the writer looks again (it also wakes when the pack is
# whole or the build ends).
POLL_SECONDS = 0.02


class GrowingPack:
    """The build's side: one per build, told where the file is, when it is whole, how it ended."""

    def __init__(self) -> None:
        self._fd: int | None = None
        self._attached = asyncio.Event()
        self._changed = asyncio.Event()  # whole, or over
        self._size: int | None = None  # known once the pack is whole
        self._over = False
        self._error: BaseException | None = None

    def attach(self, path: Path) -> None:
        """Called by the build right after it created its file, before it writes to it."""
        self._fd = os.open(path, os.O_RDONLY)
        self._attached.set()

    def written(self, size: int) -> None:
        """The pack is whole on disk: `size` bytes, every one final."""
        self._size = size
        self._changed.set()

    def settle(self, size: int | None, error: BaseException | None = None) -> None:
        """The build is over: it succeeded (having written `size` bytes, when given), or it
        failed with `error`. The file's descriptor is released once no reader needs it."""
        if self._over:
            return
        self._over, self._error = True, error
        if error is None and size is not None and self._size is None:
            self._size = size
        self._changed.set()
        self._attached.set()  # a build that failed before its file existed ends the wait too
        self._close()

    @property
    def attached(self) -> bool:
        return self._fd is not None

    async def wait_attached(self) -> None:
        await self._attached.wait()

    def reader(self) -> GrowingPackReader:
        """A reader of the pack from its first byte; call while the build runs (it holds a
        descriptor of its own, so it reads on after the build is over)."""
        if self._fd is None:
            raise RuntimeError("the build has not created its pack file, or is over")
        return GrowingPackReader(self, os.dup(self._fd))

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class GrowingPackReader:
    """One client's read of a `GrowingPack`."""

    def __init__(self, pack: GrowingPack, fd: int) -> None:
        self._pack = pack
        self._fd: int | None = fd

    def close(self) -> None:
        """Nobody will read it (the answer was not sent)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        """The pack's bytes from the first, as they are written; ends when all of them were
        read (the pack is whole, or the build succeeded), raises the build's error if it failed
        first."""
        fd, pack = self._fd, self._pack
        if fd is None:
            raise RuntimeError("this reader was closed")
        offset = 0
        try:
            while True:
                # Seen before the read: once the pack is whole or the build over, a read that
                # finds nothing more means the end, never bytes not yet written.
                size, over = pack._size, pack._over
                chunk = os.pread(fd, READ_CHUNK, offset)  # page-cache reads: microseconds
                if chunk:
                    offset += len(chunk)
                    yield chunk
                    continue
                if size is not None:
                    if offset != size:
                        raise OSError(f"read {offset} bytes of a {size}-byte pack")
                    return
                if over:
                    if pack._error is not None:
                        raise pack._error
                    return  # a build that did not say its size: all there is
                pack._changed.clear()
                try:
                    await asyncio.wait_for(pack._changed.wait(), timeout=POLL_SECONDS)
                except TimeoutError:
                    pass
        finally:
            self.close()
