"""The one async interface every object storage backend implements, its errors and key rules."""

from __future__ import annotations

import asyncio
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Self

MAX_KEY_LENGTH = 1024
# Most filesystems refuse longer names, so a longer segment could never work on the local backend.
MAX_SEGMENT_LENGTH = 255
# A segment can never start with "." so keys cannot name "..", "." or the local backend's ".tmp/".
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_PREFIX_TAIL = re.compile(r"[A-Za-z0-9._-]*")


class StorageError(Exception):
    """Any failure of the object store."""


class ObjectNotFound(StorageError):
    """No object is stored under the key."""

    def __init__(self, key: str) -> None:
        super().__init__(f"no object stored under {key!r}")
        self.key = key


class InvalidStorageKey(StorageError, ValueError):
    """The key breaks the key rules (see `validate_key`)."""


@dataclass(frozen=True, slots=True)
class StoredObjectInfo:
    key: str
    size: int
    last_modified: datetime  # timezone-aware


@dataclass(frozen=True, slots=True)
class UnfinishedUpload:
    """A multipart upload begun and neither completed nor aborted: its parts are stored (and
    billed) but no listing of objects shows them."""

    key: str
    upload_id: str
    initiated: datetime  # timezone-aware


def validate_key(key: str) -> str:
    """Return `key` unchanged if it is a safe relative storage key, else raise InvalidStorageKey.

    Keys are `/`-separated segments of `[A-Za-z0-9][A-Za-z0-9._-]*`, at most 1024 characters.
    """
    if not isinstance(key, str) or not key:
        raise InvalidStorageKey("storage key must be a non-empty string")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidStorageKey(
            f"storage key is {len(key)} characters long; the limit is {MAX_KEY_LENGTH}"
        )
    if key.startswith("/"):
        raise InvalidStorageKey(f"storage key {key[:80]!r} must be relative (no leading '/')")
    for segment in key.split("/"):
        if not segment:
            raise InvalidStorageKey(f"storage key {key[:80]!r} has an empty path segment")
        if len(segment) > MAX_SEGMENT_LENGTH:
            raise InvalidStorageKey(
                f"storage key {key[:80]!r} has a segment over {MAX_SEGMENT_LENGTH} characters"
            )
        if not _SEGMENT.fullmatch(segment):
            raise InvalidStorageKey(
                f"storage key {key[:80]!r} has a bad segment {segment[:80]!r}: segments use "
                "letters, digits, '.', '_' and '-' and start with a letter or digit"
            )
    return key


def validate_prefix(prefix: str) -> str:
    """Return `prefix` if it is "" or could begin a valid key (e.g. "mpacks/", "mpacks/ab")."""
    if prefix == "":
        return prefix
    head, _, tail = prefix.rpartition("/")
    if head:
        validate_key(head)
    elif prefix.startswith("/"):
        raise InvalidStorageKey(f"storage prefix {prefix[:80]!r} must be relative (no leading '/')")
    if tail and (tail[0] == "." or not _PREFIX_TAIL.fullmatch(tail)):
        raise InvalidStorageKey(f"storage prefix {prefix[:80]!r} can never begin a valid key")
    return prefix


class ObjectStorage(ABC):
    """Blobs and mpacks by key. Every method validates its key first.

    Use as `async with backend:` or call `aclose()` when done.
    """

    @abstractmethod
    async def put(self, key: str, data: bytes) -> None:
        """Store `data` under `key`, replacing any previous object atomically."""

    @abstractmethod
    async def put_file(self, key: str, path: Path) -> None:
        """Stream the local file at `path` to `key`; a failed upload leaves `key` untouched."""

    async def move_file(self, key: str, path: Path) -> None:
        """Like put_file, for a file the caller is done with: it is gone afterwards. A backend
        that can take the file as it is (a local folder on the same filesystem) does so
        instead of copying it."""
        await self.put_file(key, path)
        await asyncio.to_thread(path.unlink, missing_ok=True)

    @abstractmethod
    async def get(self, key: str) -> bytes:
        """The whole object; raises ObjectNotFound."""

    @abstractmethod
    def stream(
        self, key: str, *, start: int = 0, end: int | None = None, chunk_size: int = 1 << 20
    ) -> AsyncIterator[bytes]:
        """Bytes `[start, end)` of the object in chunks of at most `chunk_size`.

        An async generator: ObjectNotFound is raised on the first iteration. A range past the
        end of the object is clipped (and may be empty).
        """

    @abstractmethod
    async def size(self, key: str) -> int | None:
        """Size in bytes, or None when there is no object under `key`."""

    async def exists(self, key: str) -> bool:
        return await self.size(key) is not None

    @abstractmethod
    async def delete(self, key: str) -> None:
        """Remove the object; deleting a missing key is not an error."""

    @abstractmethod
    async def presign_get(self, key: str, ttl_seconds: int) -> str:
        """An absolute URL a plain HTTP GET (no extra headers) can fetch the object from."""

    @abstractmethod
    async def presign_put(self, key: str, ttl_seconds: int) -> str:
        """An absolute URL a plain HTTP PUT of the raw bytes (no extra headers) stores to."""

    @abstractmethod
    def list(self, prefix: str = "") -> AsyncIterator[StoredObjectInfo]:
        """Every object whose key starts with `prefix`, in no particular order."""

    async def list_unfinished_uploads(self, prefix: str = "") -> AsyncIterator[UnfinishedUpload]:
        """Multipart uploads under `prefix` not completed nor aborted; none on a backend that
        has no such thing (the local folder writes a temp file and renames it)."""
        validate_prefix(prefix)
        none: tuple[UnfinishedUpload, ...] = ()
        for upload in none:
            yield upload

    async def abort_unfinished_upload(self, upload: UnfinishedUpload) -> None:
        """Drop an unfinished upload's parts; one already gone is not an error. A writer still
        sending it fails to complete it (and sees an error, never a half object)."""
        raise StorageError(f"{self!r} has no unfinished uploads to abort ({upload.key!r})")

    @abstractmethod
    async def aclose(self) -> None:
        """Release connections and clients; the backend is unusable afterwards."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def check_range(start: int, end: int | None, chunk_size: int) -> None:
    """Refuse nonsense arguments to `stream` the same way in every backend."""
    if start < 0:
        raise ValueError(f"stream start must be >= 0, got {start}")
    if end is not None and end < 0:
        raise ValueError(f"stream end must be >= 0, got {end}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
