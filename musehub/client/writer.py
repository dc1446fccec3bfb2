"""A small pool of threads that write a clone's files while the pack is still being decoded.

A clone writes thousands of small files (objects across the 256 fan-out folders, one JSON file
per commit and snapshot, the working tree); one after another they cost more than the
download. File writes release the GIL, so a few threads overlap them with each other and with
the decoder. At most ``max_bytes`` of file contents wait for a thread: the decoder blocks
beyond that, so memory stays bounded whatever the pack's size.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

WRITER_THREADS = 4
MAX_PENDING_BYTES = 16 * 1024 * 1024


class FileWriter:
    def __init__(self, threads: int = WRITER_THREADS, max_bytes: int = MAX_PENDING_BYTES) -> None:
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="muse-write")
        self._max_bytes = max_bytes
        self._pending = 0
        self._room = threading.Condition()
        self._error: BaseException | None = None

    def submit(self, write: Callable[[], object], weight: int = 0) -> None:
        """Run ``write`` on a pool thread; ``weight`` is the bytes it holds until it ran."""
        with self._room:
            # One write larger than the budget still goes, alone.
            while self._error is None and self._pending and self._over_budget(weight):
                self._room.wait()
            if self._error is not None:
                raise self._error
            self._pending += weight
        future = self._pool.submit(write)
        future.add_done_callback(lambda f: self._done(f, weight))

    def close(self) -> None:
        """Wait for every write; raise the first error any of them met."""
        self._pool.shutdown(wait=True)
        if self._error is not None:
            raise self._error

    def abort(self) -> None:
        """Stop without waiting for queued writes (the clone failed and is being removed)."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _over_budget(self, weight: int) -> bool:
        return self._pending + weight > self._max_bytes

    def _done(self, future: Future[object], weight: int) -> None:
        error = None if future.cancelled() else future.exception()
        with self._room:
            self._pending -= weight
            if error is not None and self._error is None:
                self._error = error
            self._room.notify_all()
