"""A bounded byte pipe from the event loop (the download) to a thread (the pack decoder).

The downloader ``await``s ``write``; the decoder calls ``read`` like a file, so the streaming
msgpack reader (``musehub.mpack.reader``) decodes the pack while it arrives, and no temp file
of the whole pack is ever written. At most ``capacity`` bytes wait in the pipe: a slow disk
slows the download instead of filling memory.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque

PIPE_CAPACITY = 4 * 1024 * 1024


class PipeAborted(OSError):
    """The other end gave up; the reason is ``__cause__``. An ``OSError`` so the pack reader
    passes it through as an I/O failure rather than calling the pack malformed."""


class BytePipe:
    def __init__(self, capacity: int = PIPE_CAPACITY) -> None:
        self._loop = asyncio.get_running_loop()
        self._capacity = capacity
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._closed = False
        self._error: BaseException | None = None
        self._lock = threading.Condition()
        self._room = asyncio.Event()
        self._writer_waiting = False

    # -- event-loop side -----------------------------------------------------------------

    async def write(self, data: bytes) -> None:
        """Queue ``data``; wait while the pipe is full."""
        if not data:
            return
        while True:
            with self._lock:
                if self._error is not None:
                    raise PipeAborted("the pack reader stopped") from self._error
                if self._size < self._capacity:
                    self._chunks.append(data)
                    self._size += len(data)
                    self._lock.notify()
                    return
                self._room.clear()
                self._writer_waiting = True
            await self._room.wait()

    def close(self) -> None:
        """No more bytes: the reader sees the end of the pack once the pipe is drained."""
        with self._lock:
            self._closed = True
            self._lock.notify()

    def abort(self, error: BaseException) -> None:
        """Either side failed: the other end raises at its next call."""
        with self._lock:
            self._error = error
            self._chunks.clear()
            self._size = 0
            self._lock.notify()
        self._loop.call_soon_threadsafe(self._room.set)

    # -- decoder-thread side (a file-like ``read``) ---------------------------------------

    def read(self, n: int = -1) -> bytes:
        with self._lock:
            while not self._chunks and not self._closed and self._error is None:
                self._lock.wait()
            if self._error is not None:
                raise PipeAborted("the pack download stopped") from self._error
            if not self._chunks:
                return b""  # closed and drained: end of the pack
            out = self._take(n if n >= 0 else self._size)
            if self._writer_waiting and self._size < self._capacity:
                self._writer_waiting = False
                self._loop.call_soon_threadsafe(self._room.set)
            return out

    def _take(self, n: int) -> bytes:
        head = self._chunks[0]
        if len(head) <= n:
            self._chunks.popleft()
            self._size -= len(head)
            return head
        self._chunks[0] = head[n:]
        self._size -= n
        return head[:n]
