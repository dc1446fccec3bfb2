"""A small pool of threads that write a clone's files while the pack is still being decoded.

A clone writes thousands of small files (objects across the 256 fan-out folders, one JSON file
per commit and snapshot, the working tree). On a disk where creating a file costs a fraction
of a millisecond (ext4 on a VM disk: ~0.3 ms) one after another they cost more than the
download; file writes release the GIL, so a few threads overlap them with each other and with
the decoder. Writes go to the threads in batches (``BATCH_FILES`` or ``BATCH_BYTES``): one
hand-off per file costs more than the write itself on tmpfs. At most ``max_bytes`` of file
contents wait for a thread; the decoder blocks beyond that, so memory stays bounded whatever
the pack's size.

There is one thread per core, between 2 and 4 (``writer_threads``): on 2 cores, 4 writers
spent their extra time contending (perf: a tenth of a gabriel clone's samples spinning on the
lock of the folder they all create files in, besides the GIL), for 10-25 % more CPU and a
slower clone than 2 (median of 8 alternating clones each, three times over).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

MIN_WRITER_THREADS = 2
MAX_WRITER_THREADS = 4
MAX_PENDING_BYTES = 16 * 1024 * 1024
BATCH_FILES = 32
BATCH_BYTES = 1024 * 1024

Write = Callable[[], object]


def writer_threads(cores: int | None = None) -> int:
    """A thread per core this process may run on, ``MIN_WRITER_THREADS`` to ``MAX_…``."""
    if cores is None:
        affinity = getattr(os, "sched_getaffinity", None)
        cores = len(affinity(0)) if affinity is not None else (os.cpu_count() or 1)
    return max(MIN_WRITER_THREADS, min(MAX_WRITER_THREADS, cores))


class FileWriter:
    def __init__(self, threads: int | None = None, max_bytes: int = MAX_PENDING_BYTES) -> None:
        self._pool = ThreadPoolExecutor(
            threads if threads is not None else writer_threads(), thread_name_prefix="muse-write"
        )
        self._max_bytes = max_bytes
        self._pending = 0  # bytes submitted and not yet written, batched or queued
        self._batch: list[Write] = []
        self._batch_bytes = 0
        self._room = threading.Condition()
        self._error: BaseException | None = None

    def submit(self, write: Write, weight: int = 0) -> None:
        """Run ``write`` on a pool thread; ``weight`` is the bytes it holds until it ran."""
        with self._room:
            while self._error is None and self._pending and self._over_budget(weight):
                self._dispatch()  # the waiting bytes may all be in the unsent batch
                self._room.wait()  # one write larger than the budget still goes, alone
            if self._error is not None:
                raise self._error
            self._pending += weight
            self._batch.append(write)
            self._batch_bytes += weight
            if len(self._batch) >= BATCH_FILES or self._batch_bytes >= BATCH_BYTES:
                self._dispatch()

    def close(self) -> None:
        """Wait for every write; raise the first error any of them met."""
        with self._room:
            self._dispatch()
        self._pool.shutdown(wait=True)
        if self._error is not None:
            raise self._error

    def abort(self) -> None:
        """Stop without running queued writes (the clone failed and is being removed)."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _over_budget(self, weight: int) -> bool:
        return self._pending + weight > self._max_bytes

    def _dispatch(self) -> None:
        if not self._batch:
            return
        batch, weight = self._batch, self._batch_bytes
        self._batch, self._batch_bytes = [], 0
        future = self._pool.submit(_run_all, batch)
        future.add_done_callback(lambda f: self._done(f, weight))

    def _done(self, future: Future[None], weight: int) -> None:
        error = None if future.cancelled() else future.exception()
        with self._room:
            self._pending -= weight
            if error is not None and self._error is None:
                self._error = error
            self._room.notify_all()


def _run_all(batch: list[Write]) -> None:
    for write in batch:
        write()
