"""A wrapper that makes every read slow, so benchmarks can stand in for a distant object store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from musehub.storage.base import ObjectStorage, StoredObjectInfo, UnfinishedUpload


class LatencyInjectingStorage(ObjectStorage):
    """Delegates to `inner`, sleeping `read_delay_seconds` before each `get` and `stream`."""

    def __init__(self, inner: ObjectStorage, read_delay_seconds: float) -> None:
        if read_delay_seconds < 0:
            raise ValueError(f"read_delay_seconds must be >= 0, got {read_delay_seconds}")
        self.inner = inner
        self.read_delay_seconds = read_delay_seconds

    def __repr__(self) -> str:
        return f"LatencyInjectingStorage({self.inner!r}, {self.read_delay_seconds})"

    async def get(self, key: str) -> bytes:
        await asyncio.sleep(self.read_delay_seconds)
        return await self.inner.get(key)

    async def stream(
        self, key: str, *, start: int = 0, end: int | None = None, chunk_size: int = 1 << 20
    ) -> AsyncIterator[bytes]:
        await asyncio.sleep(self.read_delay_seconds)
        async for chunk in self.inner.stream(key, start=start, end=end, chunk_size=chunk_size):
            yield chunk

    async def put(self, key: str, data: bytes) -> None:
        await self.inner.put(key, data)

    async def put_file(self, key: str, path: Path) -> None:
        await self.inner.put_file(key, path)

    async def size(self, key: str) -> int | None:
        return await self.inner.size(key)

    async def exists(self, key: str) -> bool:
        return await self.inner.exists(key)

    async def delete(self, key: str) -> None:
        await self.inner.delete(key)

    async def presign_get(self, key: str, ttl_seconds: int) -> str:
        return await self.inner.presign_get(key, ttl_seconds)

    async def presign_put(self, key: str, ttl_seconds: int) -> str:
        return await self.inner.presign_put(key, ttl_seconds)

    async def list(self, prefix: str = "") -> AsyncIterator[StoredObjectInfo]:
        async for info in self.inner.list(prefix):
            yield info

    async def list_unfinished_uploads(self, prefix: str = "") -> AsyncIterator[UnfinishedUpload]:
        async for upload in self.inner.list_unfinished_uploads(prefix):
            yield upload

    async def abort_unfinished_upload(self, upload: UnfinishedUpload) -> None:
        await self.inner.abort_unfinished_upload(upload)

    async def aclose(self) -> None:
        await self.inner.aclose()
