"""The threaded sink writes and hashes exactly what the plain one does, and a failing disk
reaches the caller instead of vanishing in the thread."""

from __future__ import annotations

import io
import os
import random

import pytest

from musehub.mpack.sink import CHUNK_BYTES, PackSink, ThreadedPackSink


def pieces() -> list[bytes]:
    rng = random.Random(7)
    sizes = [rng.choice([0, 1, 100, 70_000, CHUNK_BYTES - 1, CHUNK_BYTES + 3]) for _ in range(60)]
    return [os.urandom(size) for size in sizes]


def test_threaded_sink_matches_the_plain_one_byte_for_byte() -> None:
    plain_out, threaded_out = io.BytesIO(), io.BytesIO()
    plain, threaded = PackSink(plain_out), ThreadedPackSink(threaded_out)
    for piece in pieces():
        plain.write(piece)
        threaded.write(piece)
    assert threaded.close() == plain.close()
    assert threaded.size == plain.size == len(plain_out.getvalue())
    assert threaded_out.getvalue() == plain_out.getvalue()


class FullDisk(io.BytesIO):
    def write(self, data: bytes) -> int:  # type: ignore[override]
        raise OSError(28, "No space left on device")


def test_a_write_failure_in_the_thread_reaches_the_caller() -> None:
    sink = ThreadedPackSink(FullDisk())
    with pytest.raises(OSError, match="No space left"):
        for _ in range(64):  # far more than the queue holds: must not block forever
            sink.write(b"x" * CHUNK_BYTES)
        sink.close()
    sink.abort()
    assert not sink._thread.is_alive()


def test_abort_stops_the_thread_without_writing_the_rest() -> None:
    out = io.BytesIO()
    sink = ThreadedPackSink(out)
    sink.write(b"short")  # under one chunk: still buffered
    sink.abort()
    assert not sink._thread.is_alive()
    assert out.getvalue() == b""
