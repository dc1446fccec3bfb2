"""The ObjectStorage contract, run against every backend (local folder and real S3 via moto)."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path, PosixPath
from typing import Any

import httpx
import pytest

from musehub.storage import (
    InvalidStorageKey,
    LocalStorage,
    ObjectNotFound,
    ObjectStorage,
    S3Storage,
    StoredObjectInfo,
)
from musehub.storage.s3 import PART_SIZE
from tests.storage.s3_server import MotoS3

BAD_KEYS = ["../x", "/abs", "a//b", "a/../b", "", "a/", ".hidden", "a/./b", "sp ace", "x" * 1025]
BIG_SIZE = 20 << 20  # > 2 S3 parts, so put_file goes multipart


@pytest.fixture(scope="session")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "big.bin"
    path.write_bytes(os.urandom(BIG_SIZE))
    return path


async def read_stream(storage: ObjectStorage, key: str, **kwargs: Any) -> bytes:
    return b"".join([chunk async for chunk in storage.stream(key, **kwargs)])


async def listed(storage: ObjectStorage, prefix: str) -> dict[str, StoredObjectInfo]:
    return {info.key: info async for info in storage.list(prefix)}


def http_client() -> httpx.AsyncClient:
    # trust_env=False: a proxy from the environment must never see loopback test traffic.
    return httpx.AsyncClient(trust_env=False, timeout=30)


# -- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"hello", bytes(range(256)) * 1000])
async def test_put_then_get_returns_the_same_bytes(storage: ObjectStorage, data: bytes) -> None:
    await storage.put("blobs/ab/cdef", data)

    assert await storage.get("blobs/ab/cdef") == data
    assert await storage.size("blobs/ab/cdef") == len(data)
    assert await storage.exists("blobs/ab/cdef")


async def test_put_overwrites(storage: ObjectStorage) -> None:
    await storage.put("k", b"first version, longer")
    await storage.put("k", b"second")

    assert await storage.get("k") == b"second"
    assert await storage.size("k") == 6


async def test_missing_key(storage: ObjectStorage) -> None:
    with pytest.raises(ObjectNotFound):
        await storage.get("no/such/key")
    with pytest.raises(ObjectNotFound):
        await read_stream(storage, "no/such/key")
    with pytest.raises(ObjectNotFound):
        await read_stream(storage, "no/such/key", start=3, end=3)
    assert await storage.size("no/such/key") is None
    assert not await storage.exists("no/such/key")


# -- streams ----------------------------------------------------------------------------------


async def test_stream_chunks_respect_chunk_size(storage: ObjectStorage) -> None:
    data = os.urandom(300_001)
    await storage.put("s", data)

    chunks = [chunk async for chunk in storage.stream("s", chunk_size=65_536)]

    assert b"".join(chunks) == data
    assert all(0 < len(chunk) <= 65_536 for chunk in chunks)
    assert len(chunks) >= 5


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (0, None, slice(0, None)),
        (10, 20, slice(10, 20)),
        (5, None, slice(5, None)),
        (999, None, slice(999, None)),
        (0, 1, slice(0, 1)),
        (1000, None, slice(0, 0)),  # start at the end: nothing
        (5000, None, slice(0, 0)),  # start past the end: nothing
        (10, 10, slice(0, 0)),
        (990, 5000, slice(990, None)),  # end past the end is clipped
    ],
)
async def test_stream_ranges(
    storage: ObjectStorage, start: int, end: int | None, expected: slice
) -> None:
    data = os.urandom(1000)
    await storage.put("r", data)

    assert await read_stream(storage, "r", start=start, end=end) == data[expected]


async def test_stream_rejects_negative_range(storage: ObjectStorage) -> None:
    await storage.put("r", b"abc")
    with pytest.raises(ValueError):
        await read_stream(storage, "r", start=-1)


# -- put_file ---------------------------------------------------------------------------------


async def test_put_file_small(storage: ObjectStorage, tmp_path: Path) -> None:
    source = tmp_path / "small.bin"
    source.write_bytes(b"small file body")

    await storage.put_file("files/small", source)

    assert await storage.get("files/small") == b"small file body"


async def test_move_file_stores_the_file_and_takes_it(
    storage: ObjectStorage, tmp_path: Path
) -> None:
    source = tmp_path / "done-with.bin"
    source.write_bytes(b"a finished pack")

    await storage.move_file("files/moved", source)

    assert await storage.get("files/moved") == b"a finished pack"
    assert not source.exists()


async def test_put_file_large_round_trips(
    storage: ObjectStorage, big_file: Path, moto_s3: MotoS3
) -> None:
    await storage.put_file("files/big", big_file)

    data = await asyncio.to_thread(big_file.read_bytes)
    assert await storage.size("files/big") == BIG_SIZE
    assert await storage.get("files/big") == data
    edge = PART_SIZE
    assert (
        await read_stream(storage, "files/big", start=edge - 7, end=edge + 7)
        == data[edge - 7 : edge + 7]
    )
    if isinstance(storage, S3Storage):
        # A multipart object's ETag ends in "-<number of parts>".
        head = moto_s3.client().head_object(Bucket=storage.bucket, Key="files/big")
        assert head["ETag"].strip('"').endswith("-3")


class _FailingReader:
    """A binary file whose reads fail once `fail_after` bytes have been handed out."""

    def __init__(self, handle: Any, fail_after: int) -> None:
        self._handle = handle
        self._left = fail_after

    def read(self, size: int = -1) -> bytes:
        data: bytes = self._handle.read(size)
        self._left -= len(data)
        if self._left < 0:
            raise OSError("simulated disk failure while reading the upload source")
        return data

    def fileno(self) -> int:
        fileno: int = self._handle.fileno()
        return fileno

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> _FailingReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def failing_path(path: Path, fail_after: int) -> Path:
    class FailingPath(PosixPath):
        def open(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            return _FailingReader(super().open(*args, **kwargs), fail_after)

    return FailingPath(path)


async def test_failed_put_file_leaves_nothing_behind(
    storage: ObjectStorage, big_file: Path, moto_s3: MotoS3
) -> None:
    await storage.put("files/existing", b"old")
    broken = failing_path(big_file, fail_after=PART_SIZE + PART_SIZE // 2)

    with pytest.raises(OSError, match="simulated"):
        await storage.put_file("files/new", broken)
    with pytest.raises(OSError, match="simulated"):
        await storage.put_file("files/existing", broken)

    assert not await storage.exists("files/new")
    assert await storage.get("files/existing") == b"old"
    assert set(await listed(storage, "")) == {"files/existing"}
    if isinstance(storage, LocalStorage):
        assert list(storage.temp_dir.iterdir()) == []
    if isinstance(storage, S3Storage):
        uploads = moto_s3.client().list_multipart_uploads(Bucket=storage.bucket)
        assert uploads.get("Uploads", []) == []


async def test_put_file_of_a_missing_source_fails_cleanly(
    storage: ObjectStorage, tmp_path: Path
) -> None:
    with pytest.raises(FileNotFoundError):
        await storage.put_file("files/x", tmp_path / "nope")
    assert not await storage.exists("files/x")


# -- delete and list --------------------------------------------------------------------------


async def test_delete_is_idempotent(storage: ObjectStorage) -> None:
    await storage.put("d/1", b"x")

    await storage.delete("d/1")
    await storage.delete("d/1")
    await storage.delete("never/existed")

    assert not await storage.exists("d/1")
    with pytest.raises(ObjectNotFound):
        await storage.get("d/1")


async def test_list_with_prefix(storage: ObjectStorage) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)
    for key in ["repos/a/1", "repos/a/2", "repos/ab/3", "repos/b/1", "mpacks/x"]:
        await storage.put(key, key.encode())

    assert set(await listed(storage, "repos/a/")) == {"repos/a/1", "repos/a/2"}
    assert set(await listed(storage, "repos/a")) == {"repos/a/1", "repos/a/2", "repos/ab/3"}
    assert set(await listed(storage, "repos/")) == {
        "repos/a/1",
        "repos/a/2",
        "repos/ab/3",
        "repos/b/1",
    }
    assert set(await listed(storage, "nothing/")) == set()
    everything = await listed(storage, "")
    assert set(everything) == {"repos/a/1", "repos/a/2", "repos/ab/3", "repos/b/1", "mpacks/x"}
    info = everything["mpacks/x"]
    assert info.size == len(b"mpacks/x")
    assert info.last_modified.tzinfo is not None
    assert before <= info.last_modified <= datetime.now(UTC) + timedelta(seconds=5)


async def test_list_after_delete(storage: ObjectStorage) -> None:
    await storage.put("g/keep", b"1")
    await storage.put("g/drop", b"2")
    await storage.delete("g/drop")

    assert set(await listed(storage, "g/")) == {"g/keep"}


# -- presigned URLs ---------------------------------------------------------------------------


async def test_presign_get_serves_the_bytes(storage: ObjectStorage) -> None:
    data = os.urandom(70_000)
    await storage.put("mpacks/abc", data)

    url = await storage.presign_get("mpacks/abc", ttl_seconds=60)

    assert url.startswith("http://127.0.0.1:")
    async with http_client() as client:
        response = await client.get(url)
    assert response.status_code == 200
    assert response.content == data


async def test_presign_get_of_a_missing_object_is_404(storage: ObjectStorage) -> None:
    url = await storage.presign_get("mpacks/missing", ttl_seconds=60)

    async with http_client() as client:
        response = await client.get(url)
    assert response.status_code == 404


# The muse client PUTs with urllib's default type; the bytes must be stored as they came.
@pytest.mark.parametrize(
    "content_type", [None, "application/octet-stream", "application/x-www-form-urlencoded"]
)
async def test_presign_put_then_get(storage: ObjectStorage, content_type: str | None) -> None:
    data = os.urandom(50_000)
    url = await storage.presign_put("uploads/u1", ttl_seconds=60)

    headers = {"Content-Type": content_type} if content_type else {}
    async with http_client() as client:
        response = await client.put(url, content=data, headers=headers)
    assert response.status_code in (200, 201, 204), response.text
    assert await storage.get("uploads/u1") == data


# -- keys and lifecycle -----------------------------------------------------------------------


@pytest.mark.parametrize("key", BAD_KEYS)
async def test_invalid_keys_are_refused_everywhere(
    storage: ObjectStorage, key: str, tmp_path: Path
) -> None:
    source = tmp_path / "f"
    source.write_bytes(b"x")
    calls = [
        storage.put(key, b"x"),
        storage.put_file(key, source),
        storage.get(key),
        read_stream(storage, key),
        storage.size(key),
        storage.exists(key),
        storage.delete(key),
        storage.presign_get(key, 60),
        storage.presign_put(key, 60),
    ]
    for call in calls:
        with pytest.raises(InvalidStorageKey):
            await call
    assert await listed(storage, "") == {}


@pytest.mark.parametrize("prefix", ["/abs", "../", "a/../", "a//"])
async def test_bad_list_prefixes_are_refused(storage: ObjectStorage, prefix: str) -> None:
    with pytest.raises(InvalidStorageKey):
        await listed(storage, prefix)


async def test_usable_as_async_context_manager(storage: ObjectStorage) -> None:
    async with storage as same:
        assert same is storage
        await same.put("ctx", b"1")
        assert await same.get("ctx") == b"1"
