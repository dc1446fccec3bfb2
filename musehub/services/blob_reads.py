"""Reading a pack's blobs from storage: a bounded number of reads (and bytes) in flight at
once, yielded in plan order (the prebuild's packs, whose bytes a retry must find again) or as
each read ends (a pack streamed while it is written), with slow reads hedged."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

from musehub.storage import ObjectNotFound, ObjectStorage

# Blob bytes held in flight at once while assembling: memory stays bounded by this, not by the
# repo's size (one blob larger than this is still read, alone).
MAX_IN_FLIGHT_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class PackObject:
    object_id: str
    storage_key: str
    size: int


class BlobMissing(Exception):
    """A blob the plan names is not in storage or does not hash to its id: a business fact,
    not something a retry fixes."""


BlobReader = Callable[[PackObject], Coroutine[Any, Any, bytes]]


async def read_in_order(
    objects: Iterable[PackObject],
    read_blob: BlobReader,
    *,
    concurrency: int,
    max_in_flight_bytes: int = MAX_IN_FLIGHT_BYTES,
) -> AsyncIterator[tuple[PackObject, bytes]]:
    """Yield (object, bytes) in the given order while up to `concurrency` reads (and at most
    `max_in_flight_bytes` of blobs) are under way: latency overlaps, memory stays bounded."""
    queue = iter(objects)
    window: deque[tuple[PackObject, asyncio.Task[bytes]]] = deque()
    in_flight = 0
    upcoming: PackObject | None = next(queue, None)
    try:
        while upcoming is not None or window:
            while (
                upcoming is not None
                and len(window) < concurrency
                and (not window or in_flight + upcoming.size <= max_in_flight_bytes)
            ):
                window.append((upcoming, asyncio.create_task(read_blob(upcoming))))
                in_flight += upcoming.size
                upcoming = next(queue, None)
            obj, task = window.popleft()
            content = await task
            in_flight -= obj.size
            yield obj, content
    finally:
        for _, task in window:
            task.cancel()


async def read_as_completed(
    objects: Iterable[PackObject],
    read_blob: BlobReader,
    *,
    concurrency: int,
    max_in_flight_bytes: int = MAX_IN_FLIGHT_BYTES,
) -> AsyncIterator[tuple[PackObject, bytes]]:
    """`read_in_order`, yielding each (object, bytes) as its read ends: a slow read holds its
    own slot, not the reads behind it."""
    queue = iter(objects)
    reading: dict[asyncio.Task[bytes], PackObject] = {}
    in_flight = 0
    upcoming: PackObject | None = next(queue, None)
    try:
        while upcoming is not None or reading:
            while (
                upcoming is not None
                and len(reading) < concurrency
                and (not reading or in_flight + upcoming.size <= max_in_flight_bytes)
            ):
                reading[asyncio.create_task(read_blob(upcoming))] = upcoming
                in_flight += upcoming.size
                upcoming = next(queue, None)
            done, _ = await asyncio.wait(reading, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                obj = reading.pop(task)
                in_flight -= obj.size
                yield obj, task.result()
    finally:
        for task in reading:
            task.cancel()


# A read is hedged (a second GET of the same object, the first answer wins) once it has run
# HEDGE_FACTOR times the median of the reads so far, and at least HEDGE_AFTER_SECONDS: one GET
# stuck on a slow connection or server should not hold a build's end. At most one hedge per
# read, and at most a HEDGE_SHARE of the build's reads hedged at once, so a store that is slow
# for everyone is not asked twice for everything.
HEDGE_FACTOR = 4.0
HEDGE_AFTER_SECONDS = 1.0
HEDGE_SHARE = 8
# Reads whose durations set the median (the most recent ones).
HEDGE_SAMPLE = 256


def hedged_reader(
    read_blob: BlobReader,
    *,
    concurrency: int,
    factor: float = HEDGE_FACTOR,
    after_seconds: float = HEDGE_AFTER_SECONDS,
) -> BlobReader:
    """`read_blob`, with a second read of an object whose first is slow (see HEDGE_FACTOR)."""
    durations: deque[float] = deque(maxlen=HEDGE_SAMPLE)
    hedges = asyncio.Semaphore(max(1, concurrency // HEDGE_SHARE))

    def patience() -> float:
        usual = statistics.median(durations) if durations else 0.0
        return max(after_seconds, factor * usual)

    async def read(obj: PackObject) -> bytes:
        started = time.perf_counter()
        first = asyncio.ensure_future(read_blob(obj))
        try:
            done, _ = await asyncio.wait({first}, timeout=patience())
            if done or hedges.locked():
                content = await first
            else:
                async with hedges:
                    content = await _first_of(first, asyncio.ensure_future(read_blob(obj)))
        finally:
            first.cancel()  # a no-op once it ended; stops it when the build is cancelled
        durations.append(time.perf_counter() - started)
        return content

    return read


async def _first_of(*reads: asyncio.Future[bytes]) -> bytes:
    """The first of `reads` to succeed (the others are cancelled); the first error if all fail."""
    pending = set(reads)
    error: BaseException | None = None
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for read in done:
                if read.exception() is None:
                    return read.result()
                error = error or read.exception()
        assert error is not None
        raise error
    finally:
        for read in pending:
            read.cancel()


def storage_blob_reader(storage: ObjectStorage) -> BlobReader:
    async def read(obj: PackObject) -> bytes:
        try:
            return await storage.get(obj.storage_key)
        except ObjectNotFound:
            raise BlobMissing(f"object {obj.object_id} is missing from storage") from None

    return read
