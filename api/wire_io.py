"""Msgpack in and out for the wire endpoints, and errors as one readable line of text.

The muse client decodes every 2xx body as msgpack and prints the first 400 characters of any
other body, so successes are msgpack maps and failures are plain sentences."""

from __future__ import annotations

import logging
from typing import Any

import msgpack
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, Response
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from musehub.mpack.errors import MPackFormatError
from musehub.mpack.ids import is_content_id
from musehub.mpack.request import decode_request
from musehub.services.blob_reads import BlobMissing
from musehub.services.errors import BadRequest, PayloadTooLarge, Unavailable, WireError
from musehub.storage import StorageError

MSGPACK = "application/x-msgpack"
log = logging.getLogger("musehub.api")


def msgpack_response(
    content: dict[str, Any], status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    body = msgpack.packb(content, use_bin_type=True)
    return Response(body, status_code, headers=headers, media_type=MSGPACK)


# A content id in msgpack: a str8 header (2 bytes) and 64 hex characters.
PACKED_ID_BYTES = 66
# Room for the map, the list headers and the small fields beside the id lists.
BODY_SLACK_BYTES = 64 * 1024


def id_list_body_limit(max_ids: int) -> int:
    """The body limit of a request that carries at most `max_ids` content ids: a body larger
    than that cannot be valid, so it is refused before it is read."""
    return max_ids * PACKED_ID_BYTES + BODY_SLACK_BYTES


async def read_msgpack_body(request: Request, max_bytes: int) -> dict[str, Any]:
    """The request body as a map; refuses oversized bodies before and while reading them."""
    declared = declared_length(request.headers.get("content-length"))
    return decode_body(await read_body(request, max_bytes, declared=declared))


def declared_length(header: str | None) -> int | None:
    """The Content-Length header as a number (None when absent). Not `int()` on anything
    `isdigit()` accepts: `"²".isdigit()` is true and 5,000 digits are too many for `int()`."""
    if header is None:
        return None
    if not (header.isascii() and header.isdigit()):
        raise BadRequest(f"Content-Length must be a number of bytes, not {header[:40]!r}")
    return int(header) if len(header) <= 18 else 10**18


async def read_body(request: Request, max_bytes: int, *, declared: int | None) -> bytes:
    """The raw body, refused (413) when `declared` or the bytes received pass `max_bytes`.
    Reads the ASGI messages itself: the hot path's body is one message, taken as it is."""
    if declared is not None and declared > max_bytes:
        raise PayloadTooLarge(f"request body of {declared} bytes is over the limit of {max_bytes}")
    chunks: list[bytes] = []
    received = 0
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        received += len(chunk)
        if received > max_bytes:
            raise PayloadTooLarge(f"request body is over the limit of {max_bytes} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def decode_body(raw: bytes) -> dict[str, Any]:
    try:
        return decode_request(raw)
    except MPackFormatError as exc:
        raise BadRequest(f"{exc} (send Content-Type: {MSGPACK})") from None


def id_list(
    body: dict[str, Any], field: str, *, max_items: int, required: bool = True
) -> list[str]:
    """A list of content ids from the request; every bad id is named in the message."""
    value = body.get(field)
    if value is None and not required:
        return []
    if not isinstance(value, list):
        raise BadRequest(f"'{field}' must be a list of commit or object ids")
    if required and not value:
        raise BadRequest(f"'{field}' must not be empty")
    if len(value) > max_items:
        raise BadRequest(
            f"'{field}' has {len(value)} ids; at most {max_items} are accepted per request"
        )
    for item in value:
        if not is_content_id(item):
            raise BadRequest(
                f"'{field}' holds {str(item)[:80]!r}, which is not a 64-character lowercase hex id"
            )
    return value


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(WireError)
    async def wire_error(request: Request, exc: WireError) -> Response:
        if isinstance(exc, Unavailable):
            return PlainTextResponse(
                exc.message, exc.status, headers={"Retry-After": str(exc.retry_after)}
            )
        return PlainTextResponse(exc.message, exc.status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return PlainTextResponse(f"bad request: {where}: {first.get('msg', 'invalid')}", 400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        detail = exc.detail if isinstance(exc.detail, str) else "request refused"
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"nothing at {request.url.path}: check the remote URL (host/owner/repo)"
        return PlainTextResponse(detail, exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, exc: ClientDisconnect) -> Response:
        # Nobody is listening any more; 499 (nginx's "client closed request") keeps logs honest.
        return PlainTextResponse("client closed the request", 499)

    @app.exception_handler(StorageError)
    async def storage_down(request: Request, exc: StorageError) -> Response:
        log.warning("object storage error on %s: %s", request.url.path, exc)
        return PlainTextResponse(
            "the hub's object storage is failing right now; nothing was changed, try again soon",
            503,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(BlobMissing)
    async def blob_missing(request: Request, exc: BlobMissing) -> Response:
        log.error("repository data incomplete on %s: %s", request.url.path, exc)
        return PlainTextResponse(
            f"this repository's stored data is incomplete ({exc}); please tell the hub's operators",
            500,
        )

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    @app.exception_handler(PoolTimeout)  # every pooled connection busy (PostgreSQL stalled)
    @app.exception_handler(OSError)
    async def database_down(request: Request, exc: Exception) -> Response:
        log.warning("database unavailable: %s: %s", type(exc).__name__, exc)
        return PlainTextResponse(
            "the hub's database is unavailable right now; try again in a minute",
            503,
            headers={"Retry-After": "5"},
        )
