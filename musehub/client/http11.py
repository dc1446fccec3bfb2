"""HTTP/1.1 for httpx on asyncio's own streams: the transport a clone from an http:// hub uses.

httpx's default transport runs on httpcore and anyio. Loading anyio's asyncio backend on the
first request cost a clone about 50 ms of CPU (a sixth of its start-up), and each 64 KiB of a
pack went through anyio's cancel scopes and h11's buffers. What a hub and its storage need is
narrow: a request with its body in memory; a response framed by ``Content-Length``, chunked, or
ended by the close; connections kept alive and reused. That is all this speaks. ``https://``
goes to httpx's own transport, built (with its TLS context) on the first such request only.

Failures are httpx's exceptions (``ConnectError``, ``ReadError``, ``RemoteProtocolError``, the
timeouts), so callers retry and report them as they did with httpx's transport. A connection is
put back for reuse only once its response was read to the end; one that sat idle and was closed
by the server is found out before reuse, or, at worst, when it answers nothing at all: the
request then goes once more on a new connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx

READ_BYTES = 256 * 1024
STREAM_LIMIT = 1024 * 1024  # the longest response head; asyncio buffers up to twice this
MAX_IDLE_PER_HOST = 8
_NO_BODY_STATUSES = frozenset({204, 304})

Timeouts = dict[str, Any]


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def usable(self) -> bool:
        """Idle and still open, as far as the event loop has seen: the server did not close it."""
        return not (self.writer.is_closing() or self.reader.at_eof())

    def close(self) -> None:
        self.writer.close()


class AsyncioHTTPTransport(httpx.AsyncBaseTransport):
    """``proxy``: an ``http://host:port`` proxy for http:// URLs (requests in absolute form),
    as ``HTTP_PROXY`` names one; hosts ``NO_PROXY`` names go direct."""

    def __init__(self, proxy: str | None = None) -> None:
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self._tls: httpx.AsyncHTTPTransport | None = None
        self._proxy: tuple[str, int] | None = None
        if proxy is not None:
            via = httpx.URL(proxy)
            if via.scheme != "http" or not via.host:
                raise ValueError(f"not an http:// proxy: {proxy!r}")
            self._proxy = (via.host, via.port or 80)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        scheme = request.url.scheme
        if scheme == "https":
            if self._tls is None:
                self._tls = httpx.AsyncHTTPTransport()
            return await self._tls.handle_async_request(request)
        if scheme != "http":
            raise httpx.UnsupportedProtocol(
                f"the URL scheme {scheme!r} is not supported (http or https)", request=request
            )
        timeouts: Timeouts = request.extensions.get("timeout", {})
        key = (request.url.host, request.url.port or 80)
        proxied = self._proxy is not None and not _bypass(request.url.host)
        if proxied:
            assert self._proxy is not None
            key = self._proxy
        message = _request_bytes(request, await request.aread(), absolute=proxied)
        conn = self._take(key)
        if conn is not None:
            try:
                return await self._exchange(request, key, conn, message, timeouts)
            except _Stale:
                conn.close()  # the server closed it while it was idle: once more, on a new one
        conn = await _connect(request, key, timeouts)
        try:
            return await self._exchange(request, key, conn, message, timeouts)
        except _Stale as exc:
            conn.close()
            raise httpx.RemoteProtocolError(
                "the server closed the connection without answering", request=request
            ) from exc

    async def aclose(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()
        if self._tls is not None:
            await self._tls.aclose()

    def _take(self, key: tuple[str, int]) -> _Connection | None:
        conns = self._idle.get(key)
        while conns:
            conn = conns.pop()
            if conn.usable():
                return conn
            conn.close()
        return None

    def _put(self, key: tuple[str, int], conn: _Connection) -> None:
        conns = self._idle.setdefault(key, [])
        if len(conns) < MAX_IDLE_PER_HOST and conn.usable():
            conns.append(conn)
        else:
            conn.close()

    async def _exchange(
        self,
        request: httpx.Request,
        key: tuple[str, int],
        conn: _Connection,
        message: bytes,
        timeouts: Timeouts,
    ) -> httpx.Response:
        try:
            async with asyncio.timeout(timeouts.get("write")):
                conn.writer.write(message)
                await conn.writer.drain()
        except TimeoutError as exc:
            conn.close()
            raise httpx.WriteTimeout("timed out sending the request", request=request) from exc
        except OSError as exc:
            raise _Stale() from exc
        try:
            status, headers, reason = await _read_head(conn.reader, request, timeouts.get("read"))
        except _Stale:
            raise
        except BaseException:
            conn.close()
            raise
        body = _Body(self, key, conn, request, headers, status, timeouts.get("read"))
        return httpx.Response(
            status,
            headers=headers,
            stream=body,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": reason},
        )


class _Stale(Exception):
    """The connection ended before a byte of the answer: the server never saw the request."""


async def _connect(request: httpx.Request, key: tuple[str, int], timeouts: Timeouts) -> _Connection:
    try:
        async with asyncio.timeout(timeouts.get("connect")):
            reader, writer = await asyncio.open_connection(*key, limit=STREAM_LIMIT)
    except TimeoutError as exc:
        raise httpx.ConnectTimeout(
            f"timed out connecting to {key[0]}:{key[1]}", request=request
        ) from exc
    except OSError as exc:
        raise httpx.ConnectError(str(exc) or type(exc).__name__, request=request) from exc
    return _Connection(reader, writer)


def _bypass(host: str) -> bool:
    import urllib.request  # already loaded by httpx

    return bool(urllib.request.proxy_bypass(host))


def _request_bytes(request: httpx.Request, body: bytes, *, absolute: bool = False) -> bytes:
    url = request.url
    target = url.raw_path
    if absolute:  # to a proxy: the whole URL
        target = b"%s://%s%s" % (url.raw_scheme, url.netloc, url.raw_path)
    lines = [b"%s %s HTTP/1.1" % (request.method.encode("ascii"), target)]
    for name, value in request.headers.raw:
        if name.lower() not in (b"content-length", b"transfer-encoding"):
            lines.append(name + b": " + value)
    if body or request.method not in ("GET", "HEAD"):
        lines.append(b"Content-Length: %d" % len(body))  # the body is whole in memory
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


async def _read_head(
    reader: asyncio.StreamReader, request: httpx.Request, read_timeout: float | None
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """The status, headers and reason of the answer (informational 1xx heads skipped)."""
    while True:
        try:
            async with asyncio.timeout(read_timeout):
                raw = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                raise _Stale() from exc
            raise httpx.RemoteProtocolError(
                "the answer's head was cut short", request=request
            ) from exc
        except asyncio.LimitOverrunError as exc:
            raise httpx.RemoteProtocolError(
                "the answer's head is too long", request=request
            ) from exc
        except TimeoutError as exc:
            raise httpx.ReadTimeout("timed out waiting for the answer", request=request) from exc
        except OSError as exc:
            raise _Stale() from exc
        lines = raw[:-4].split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise httpx.RemoteProtocolError(
                f"not an HTTP/1.1 answer: {lines[0][:80]!r}", request=request
            )
        status = int(parts[1])
        if 100 <= status < 200:
            continue
        headers = []
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon:
                raise httpx.RemoteProtocolError(
                    f"a malformed header line: {line[:80]!r}", request=request
                )
            headers.append((name.strip(), value.strip()))
        return status, headers, parts[2] if len(parts) > 2 else b""


class _Body(httpx.AsyncByteStream):
    """The response body, framed as its headers say; the connection goes back to the pool once
    it was read to its end, and is closed otherwise."""

    def __init__(
        self,
        transport: AsyncioHTTPTransport,
        key: tuple[str, int],
        conn: _Connection,
        request: httpx.Request,
        headers: list[tuple[bytes, bytes]],
        status: int,
        timeout: float | None,
    ) -> None:
        self._transport, self._key, self._conn, self._request = transport, key, conn, request
        self._timeout = timeout
        self._done = False
        self._reusable = True
        self._length: int | None = None
        self._chunked = False
        for name, value in headers:
            lowered = name.lower()
            if lowered == b"transfer-encoding" and b"chunked" in value.lower():
                self._chunked = True
            elif lowered == b"content-length" and value.isdigit():
                self._length = int(value)
            elif lowered == b"connection" and b"close" in value.lower():
                self._reusable = False
        if request.method == "HEAD" or status in _NO_BODY_STATUSES:
            self._chunked, self._length = False, 0
        elif not self._chunked and self._length is None:
            self._reusable = False  # the body ends when the server closes the connection

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._done:
            return
        try:
            if self._chunked:
                async for data in self._chunks():
                    yield data
            elif self._length is not None:
                left = self._length
                while left:
                    data = await self._read(min(READ_BYTES, left))
                    if not data:
                        raise httpx.RemoteProtocolError(
                            f"the server closed the connection {left} bytes before the end "
                            f"of a {self._length}-byte body",
                            request=self._request,
                        )
                    left -= len(data)
                    yield data
            else:
                while data := await self._read(READ_BYTES):
                    yield data
            self._done = True
        except asyncio.IncompleteReadError as exc:
            raise httpx.RemoteProtocolError(
                "the server closed the connection in the middle of a chunk",
                request=self._request,
            ) from exc
        except ValueError as exc:
            raise httpx.RemoteProtocolError(
                f"a malformed chunk: {exc}", request=self._request
            ) from exc

    async def _chunks(self) -> AsyncIterator[bytes]:
        reader = self._conn.reader
        while True:
            line = await self._call(reader.readuntil(b"\r\n"))
            size = int(line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while await self._call(reader.readuntil(b"\r\n")) != b"\r\n":
                    pass  # trailers, ignored
                return
            while size:
                data = await self._call(reader.readexactly(min(READ_BYTES, size)))
                size -= len(data)
                yield data
            if await self._call(reader.readexactly(2)) != b"\r\n":
                raise ValueError("no CRLF after the chunk")

    async def _read(self, n: int) -> bytes:
        return await self._call(self._conn.reader.read(n))

    async def _call(self, read: Any) -> bytes:
        try:
            async with asyncio.timeout(self._timeout):
                data: bytes = await read
                return data
        except TimeoutError as exc:
            raise httpx.ReadTimeout("timed out reading the answer", request=self._request) from exc
        except asyncio.LimitOverrunError as exc:
            raise httpx.RemoteProtocolError(
                "a chunk header too long", request=self._request
            ) from exc
        except (ConnectionError, OSError) as exc:
            raise httpx.ReadError(str(exc) or type(exc).__name__, request=self._request) from exc

    async def aclose(self) -> None:
        if self._done and self._reusable:
            self._transport._put(self._key, self._conn)
        else:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._done, self._reusable = True, False  # a second aclose does nothing
