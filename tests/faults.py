"""Storage that counts reads and fails the first few reads (or deletes): the one thing these
tests fake is the object store misbehaving (everything else stays real)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from musehub.storage import LatencyInjectingStorage, ObjectStorage, StorageError


class FaultyStorage(LatencyInjectingStorage):
    def __init__(self, inner: ObjectStorage, *, fail_reads: int = 0, fail_deletes: int = 0) -> None:
        super().__init__(inner, read_delay_seconds=0)
        self.fail_reads = fail_reads
        self.fail_deletes = fail_deletes
        self.reads = 0

    def _count(self, key: str) -> None:
        self.reads += 1
        if self.fail_reads > 0:
            self.fail_reads -= 1
            raise StorageError(f"injected fault reading {key}")

    async def get(self, key: str) -> bytes:
        self._count(key)
        return await super().get(key)

    async def stream(
        self, key: str, *, start: int = 0, end: int | None = None, chunk_size: int = 1 << 20
    ) -> AsyncIterator[bytes]:
        self._count(key)
        async for chunk in super().stream(key, start=start, end=end, chunk_size=chunk_size):
            yield chunk

    async def delete(self, key: str) -> None:
        if self.fail_deletes > 0:
            self.fail_deletes -= 1
            raise StorageError(f"injected fault deleting {key}")
        await super().delete(key)

    async def aclose(self) -> None:
        """The wrapped storage belongs to the session; closing the wrapper leaves it open."""
