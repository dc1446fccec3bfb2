"""Where a pack's bytes go: counted, sha256-hashed and written to a file.

`PackSink` does it in the caller's thread. `ThreadedPackSink` hands the bytes, 1 MiB at a time,
to a thread of its own: hashing and writing release the GIL, so the event loop that assembles
the pack goes on fetching the next records meanwhile, and a second build in the same worker
gets the loop too. In a profile of the 10x preset's clone pack, hashing and writing were a
third of the build, all of it on the event loop."""

from __future__ import annotations

import hashlib
import queue
import threading
from typing import BinaryIO

CHUNK_BYTES = 1 << 20
# Chunks waiting for the thread at most: bounds the memory a slow disk can make us hold (two
# are enough to overlap; with eight a 2 GB build grew +63 MiB, +40 without the sink).
QUEUE_DEPTH = 2
# Handed to the thread to ask it to flush the file (an empty chunk writes nothing otherwise).
FLUSH = b""


class PackSink:
    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self._out.write(data)
        self._hash.update(data)
        self.size += len(data)

    def flush(self) -> None:
        """Everything written so far goes to the file now (a reader may be waiting for it)."""
        self._out.flush()

    def close(self) -> str:
        """Everything written: the sha256 of all of it."""
        return self._hash.hexdigest()

    def abort(self) -> None:
        """The pack will not be finished; nothing to release here."""


class ThreadedPackSink(PackSink):
    def __init__(self, out: BinaryIO) -> None:
        super().__init__(out)
        self._buffer = bytearray()
        self._chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=QUEUE_DEPTH)
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, name="pack-sink", daemon=True)
        self._thread.start()

    def write(self, data: bytes) -> None:
        self._raise_failure()
        self.size += len(data)
        if not self._buffer and len(data) >= CHUNK_BYTES:
            # A big blob goes as it is, not copied into the buffer (bytes cannot change later).
            self._chunks.put(data if isinstance(data, bytes) else bytes(data))
            return
        self._buffer += data
        if len(self._buffer) >= CHUNK_BYTES:
            self._hand_over()

    def flush(self) -> None:
        self._raise_failure()
        if self._buffer:
            self._hand_over()
        self._chunks.put(FLUSH)

    def close(self) -> str:
        if self._buffer:
            self._hand_over()
        self._stop()
        self._raise_failure()
        return self._hash.hexdigest()

    def abort(self) -> None:
        self._buffer.clear()
        self._stop()

    def _hand_over(self) -> None:
        # Blocks only while QUEUE_DEPTH chunks wait: the disk is the bottleneck then anyway.
        self._chunks.put(bytes(self._buffer))
        self._buffer.clear()

    def _stop(self) -> None:
        if self._thread.is_alive():
            self._chunks.put(None)
            self._thread.join()

    def _drain(self) -> None:
        while (chunk := self._chunks.get()) is not None:
            if self._failure is not None:
                continue  # keep taking chunks, so the producer never blocks on a dead sink
            try:
                if not chunk:  # FLUSH
                    self._out.flush()
                    continue
                self._out.write(chunk)
                self._hash.update(chunk)
            except BaseException as exc:  # handed to the producer's thread on its next call
                self._failure = exc

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure
