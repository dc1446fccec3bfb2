"""Serves the local storage backend's presigned URLs: GET/HEAD with Range, and PUT."""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response, StreamingResponse

from api.deps import StorageDep
from musehub.storage.base import InvalidStorageKey, ObjectStorage, StorageError, validate_key
from musehub.storage.local import LocalStorage
from musehub.storage.signing import (
    STORAGE_URL_PREFIX,
    ExpiredSignature,
    InvalidSignature,
    parse_expires,
)

MAX_PUT_BYTES = 2 << 30
WRITE_CHUNK = 1 << 20
OCTET_STREAM = "application/octet-stream"
# ASCII digits only: `\d` also takes other scripts' digits, which int() reads or refuses.
_SINGLE_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)")
_DIGITS = re.compile(r"[0-9]+")
# Past any object; a longer number reads as this, unconverted (int() refuses 4,300+ digits).
_BEYOND_ANY_OBJECT = 1 << 63

INVALID_LINK = "this storage link is invalid (its signature does not match); ask for a new one"
EXPIRED_LINK = "this link has expired; ask the server for a new one"


class _Refused(Exception):
    """Ends a request with a one-line plain-text answer."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}

    def response(self) -> Response:
        return PlainTextResponse(self.message + "\n", self.status, headers=self.headers)


class RangeNotSatisfiable(Exception):
    pass


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The single byte range `[start, end)` a Range header asks for, or None for the whole object.

    Raises RangeNotSatisfiable when the range starts past the end. Malformed or multi-range
    headers are ignored (RFC 9110 lets a server answer those with the whole object). Positions
    too long to convert count as past the end: an end is clipped, a suffix is the whole object.
    """
    if header is None:
        return None
    match = _SINGLE_RANGE.fullmatch(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first:
        if not last:
            return None
        suffix = _position(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable
        return max(0, size - suffix), size
    start = _position(first)
    if last and _position(last) < start:
        return None
    if start >= size:
        raise RangeNotSatisfiable
    end = size if not last else min(_position(last) + 1, size)
    return start, end


def _position(digits: str) -> int:
    """A byte position or length written in ASCII digits (leading zeros allowed)."""
    significant = digits.lstrip("0")
    return int(significant or "0") if len(significant) <= 18 else _BEYOND_ANY_OBJECT


def storage_router(*, max_put_bytes: int = MAX_PUT_BYTES) -> APIRouter:
    """Routes for `/_storage/{key}`; uploads larger than `max_put_bytes` get a 413."""
    router = APIRouter(tags=["storage"])
    path = STORAGE_URL_PREFIX + "{key:path}"

    @router.api_route(path, methods=["GET", "HEAD"], include_in_schema=False)
    async def read_object(key: str, request: Request, backend: StorageDep) -> Response:
        try:
            storage = _authorise(backend, request, key, "GET")
            size = await storage.size(key)
            if size is None:
                raise _Refused(404, f"no object is stored at {key!r}")
            try:
                wanted = parse_range(request.headers.get("range"), size)
            except RangeNotSatisfiable:
                raise _Refused(
                    416,
                    f"the requested range is outside the object's {size} bytes",
                    {"Content-Range": f"bytes */{size}", "Accept-Ranges": "bytes"},
                ) from None
        except _Refused as refused:
            return refused.response()
        except InvalidStorageKey as exc:  # e.g. a symlink that leads out of the storage folder
            return _Refused(400, str(exc)).response()
        start, end = wanted or (0, size)
        headers = {"Accept-Ranges": "bytes", "Content-Length": str(end - start)}
        status = 200
        if wanted is not None:
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        if request.method == "HEAD":
            return Response(status_code=status, headers=headers, media_type=OCTET_STREAM)
        body = storage.stream(key, start=start, end=end)
        return StreamingResponse(body, status_code=status, headers=headers, media_type=OCTET_STREAM)

    @router.put(path, include_in_schema=False)
    async def write_object(key: str, request: Request, backend: StorageDep) -> Response:
        try:
            storage = _authorise(backend, request, key, "PUT")
            declared = request.headers.get("content-length")
            if declared is not None and not _DIGITS.fullmatch(declared):
                raise _Refused(400, "Content-Length must be a number of bytes")
            if declared is not None and _position(declared) > max_put_bytes:
                raise _too_large(max_put_bytes)
            await _receive_into_storage(request, storage, key, max_put_bytes)
        except _Refused as refused:
            return refused.response()
        except InvalidStorageKey as exc:
            return _Refused(400, str(exc)).response()
        except StorageError as exc:  # e.g. the key names an existing folder of objects
            return _Refused(409, str(exc)).response()
        return Response(status_code=200)

    return router


router = storage_router()


async def _receive_into_storage(
    request: Request, storage: LocalStorage, key: str, max_bytes: int
) -> None:
    """Spool the body to a temp file next to the objects, then store it atomically."""
    fd, name = await asyncio.to_thread(tempfile.mkstemp, dir=storage.temp_dir, prefix="upload-")
    spool = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            received = 0
            buffer = bytearray()
            async for chunk in request.stream():
                received += len(chunk)
                if received > max_bytes:
                    raise _too_large(max_bytes)
                buffer += chunk
                # ASGI chunks are small; batch them so each thread hop writes ~1 MiB.
                if len(buffer) >= WRITE_CHUNK:
                    await asyncio.to_thread(out.write, buffer)
                    buffer.clear()
            if buffer:
                await asyncio.to_thread(out.write, buffer)
        await storage.put_file(key, spool)
    finally:
        await asyncio.to_thread(spool.unlink, missing_ok=True)


def _authorise(storage: ObjectStorage, request: Request, key: str, method: str) -> LocalStorage:
    """The local backend, once the key is valid and the link is genuine and fresh for `method`."""
    if not isinstance(storage, LocalStorage):
        raise _Refused(404, "this server does not serve storage links (it uses no local storage)")
    try:
        validate_key(key)
    except InvalidStorageKey as exc:
        raise _Refused(400, str(exc)) from None
    query = request.query_params
    signed_method, expires, signature = (query.get(n) for n in ("method", "expires", "signature"))
    if not signed_method or not expires or not signature:
        raise _Refused(403, INVALID_LINK)
    if signed_method != method:
        raise _Refused(403, f"this storage link is for {signed_method[:10]} requests, not {method}")
    try:
        storage.verify_presigned(method, key, parse_expires(expires), signature)
    except ExpiredSignature:
        raise _Refused(403, EXPIRED_LINK) from None
    except InvalidSignature:
        raise _Refused(403, INVALID_LINK) from None
    return storage


def _too_large(max_bytes: int) -> _Refused:
    return _Refused(413, f"upload refused: it is larger than the {max_bytes}-byte limit")
