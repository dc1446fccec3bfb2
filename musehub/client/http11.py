"""HTTP/1.1 on asyncio's own streams: the client a clone from an http:// hub talks through.

httpx's default transport runs on httpcore and anyio; importing httpx was about a quarter of a
small clone's CPU, and each 64 KiB of a pack went through anyio's cancel scopes and h11's
buffers. What a hub and its storage need is narrow: a request with its body in
memory; a response framed by ``Content-Length``, chunked, or ended by the close; connections
kept alive and reused. That is all this speaks, with the part of ``httpx.AsyncClient``'s API the
client uses (``session.Session``). ``https://`` URLs go to an ``httpx.AsyncClient``, built (with
its TLS context) on the first such request only.

Failures are ``session``'s exceptions, named as httpx's are (``ConnectError``, ``ReadError``,
``RemoteProtocolError``, the timeouts), so callers retry and report them as they do httpx's. A
connection is put back for reuse only once its response was read to the end; one that sat idle
and was closed by the server is found out before reuse, or, at worst, when it answers nothing at
all: the request then goes once more on a new connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from musehub.client.http11_request import Address, proxy_address, request_bytes, route
from musehub.client.session import (
    ConnectError,
    ConnectTimeout,
    ReadError,
    ReadTimeout,
    RemoteProtocolError,
    WriteTimeout,
)

if TYPE_CHECKING:
    import socket

    import httpx

    from musehub.client.early import EarlyRequest

READ_BYTES = 256 * 1024
STREAM_LIMIT = 1024 * 1024  # the longest response head; asyncio buffers up to twice this
MAX_IDLE_PER_HOST = 8
_NO_BODY_STATUSES = frozenset({204, 304})
_DEFAULT: Any = object()  # the client's timeout (``None`` means none at all, as in httpx)


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def usable(self) -> bool:
        """Idle and still open, as far as the event loop has seen: the server did not close it."""
        return not (self.writer.is_closing() or self.reader.at_eof())

    def close(self) -> None:
        self.writer.close()


class Headers:
    """A response's headers, looked up by name in any case (repeated ones joined by commas)."""

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self.raw = raw
        self._by_name: dict[str, str] = {}
        for name, value in raw:
            key, text = name.decode("latin-1").lower(), value.decode("latin-1")
            known = self._by_name.get(key)
            self._by_name[key] = text if known is None else f"{known}, {text}"

    def get(self, key: str, default: Any = None) -> Any:
        return self._by_name.get(key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return self._by_name[key.lower()]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._by_name


class Response:
    def __init__(self, status_code: int, headers: Headers, reason: bytes, body: _Body) -> None:
        self.status_code = status_code
        self.headers = headers
        self.reason_phrase = reason.decode("latin-1")
        self._body = body
        self._content: bytes | None = None

    def aiter_bytes(self) -> AsyncIterator[bytes]:
        return self._body.chunks()

    async def aread(self) -> bytes:
        if self._content is None:
            self._content = b"".join([chunk async for chunk in self.aiter_bytes()])
        return self._content

    @property
    def content(self) -> bytes:
        if self._content is None:
            raise RuntimeError("the body was not read: call aread() first")
        return self._content

    async def aclose(self) -> None:
        self._body.close()


class HTTP11Client:
    """``headers`` go with every request, ``timeout`` (seconds) bounds each connect, write and
    read unless a request says otherwise. ``proxy``: an ``http://host:port`` proxy for http://
    URLs (requests in absolute form), as ``HTTP_PROXY`` names one; hosts ``NO_PROXY`` names go
    direct. ``early``: a request sent before this client existed (``early.py``); when the first
    request this client sends is those bytes, it reads that request's answer instead."""

    def __init__(
        self,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        proxy: str | None = None,
        early: EarlyRequest | None = None,
    ) -> None:
        self._headers = dict(headers or {})
        self._timeout = timeout
        self._idle: dict[Address, list[_Connection]] = {}
        self._tls: httpx.AsyncClient | None = None
        self._proxy = proxy_address(proxy) if proxy is not None else None
        self._early = early

    async def __aenter__(self) -> HTTP11Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @contextlib.asynccontextmanager
    async def stream(
        self,
        method: str,
        url: str,
        *,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: Any = _DEFAULT,  # noqa: ASYNC109  # httpx's name: the session API is its subset
        follow_redirects: Any = False,
    ) -> AsyncIterator[Any]:
        """The answer, its body still to be read; its connection is reused once it was read to
        the end, closed otherwise. Redirects are never followed (the client refuses them)."""
        seconds = self._timeout if timeout is _DEFAULT else timeout
        if url.startswith("https://"):
            async with self._https().stream(
                method, url, content=content, headers=headers, timeout=seconds
            ) as answer:
                yield answer
            return
        response = await self._send(method, url, content or b"", headers or {}, seconds)
        try:
            yield response
        finally:
            await response.aclose()

    async def request(self, method: str, url: str, **options: Any) -> Any:
        """The whole answer, body read (for tests and small answers)."""
        async with self.stream(method, url, **options) as answer:
            await answer.aread()
            return answer

    async def get(self, url: str, **options: Any) -> Any:
        return await self.request("GET", url, **options)

    async def post(self, url: str, **options: Any) -> Any:
        return await self.request("POST", url, **options)

    async def aclose(self) -> None:
        if self._early is not None:
            self._early.close()
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()
        if self._tls is not None:
            await self._tls.aclose()

    def _https(self) -> httpx.AsyncClient:
        if self._tls is None:
            import httpx

            self._tls = httpx.AsyncClient(
                headers=self._headers, follow_redirects=False, timeout=httpx.Timeout(self._timeout)
            )
        return self._tls

    async def _send(
        self,
        method: str,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        seconds: float | None,
    ) -> Response:
        key, target, host = route(url, self._proxy)
        message = request_bytes(method, target, host, [self._headers, headers], body)
        if self._early is not None:
            answered = await self._early_answer(method, key, message, seconds)
            if answered is not None:
                return answered
        conn = self._take(key)
        if conn is not None:
            try:
                return await self._exchange(method, key, conn, message, seconds)
            except _Stale:
                conn.close()  # the server closed it while it was idle: once more, on a new one
        conn = await _connect(key, seconds)
        try:
            return await self._exchange(method, key, conn, message, seconds)
        except _Stale as exc:
            conn.close()
            raise RemoteProtocolError("the server closed the connection without answering") from exc

    async def _early_answer(
        self, method: str, key: Address, message: bytes, seconds: float | None
    ) -> Response | None:
        """The answer to the request sent early, when ``message`` is it; None otherwise (the
        early one is dropped, whatever this request is: it is only ever the first)."""
        assert self._early is not None
        early, self._early = self._early, None
        if early.done():
            sock = early.claim(key, message)
        else:  # still connecting: wait in a thread, not on the event loop
            sock = await asyncio.to_thread(early.claim, key, message)
        if sock is None:
            return None
        conn = await _adopt(sock)
        try:
            return await self._answer(method, key, conn, seconds)
        except _Stale:
            conn.close()  # closed without an answer: the caller sends it again, as usual
            return None

    def _take(self, key: Address) -> _Connection | None:
        conns = self._idle.get(key)
        while conns:
            conn = conns.pop()
            if conn.usable():
                return conn
            conn.close()
        return None

    def _put(self, key: Address, conn: _Connection) -> None:
        conns = self._idle.setdefault(key, [])
        if len(conns) < MAX_IDLE_PER_HOST and conn.usable():
            conns.append(conn)
        else:
            conn.close()

    async def _exchange(
        self,
        method: str,
        key: Address,
        conn: _Connection,
        message: bytes,
        seconds: float | None,
    ) -> Response:
        try:
            async with asyncio.timeout(seconds):
                conn.writer.write(message)
                await conn.writer.drain()
        except TimeoutError as exc:
            conn.close()
            raise WriteTimeout("timed out sending the request") from exc
        except OSError as exc:
            raise _Stale() from exc
        return await self._answer(method, key, conn, seconds)

    async def _answer(
        self, method: str, key: Address, conn: _Connection, seconds: float | None
    ) -> Response:
        """The answer to the request just sent on ``conn``, its body still to be read."""
        try:
            status, raw_headers, reason = await _read_head(conn.reader, seconds)
        except _Stale:
            raise
        except BaseException:
            conn.close()
            raise
        headers = Headers(raw_headers)
        encoding = headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            conn.close()
            raise RemoteProtocolError(
                f"the server sent a {encoding}-encoded body, which was not asked for"
            )
        body = _Body(self, key, conn, method, headers, status, seconds)
        return Response(status, headers, reason, body)


class _Stale(Exception):
    """The connection ended before a byte of the answer: the server never saw the request."""


async def _connect(key: Address, seconds: float | None) -> _Connection:
    try:
        async with asyncio.timeout(seconds):
            reader, writer = await asyncio.open_connection(*key, limit=STREAM_LIMIT)
    except TimeoutError as exc:
        raise ConnectTimeout(f"timed out connecting to {key[0]}:{key[1]}") from exc
    except OSError as exc:
        raise ConnectError(str(exc) or type(exc).__name__) from exc
    return _Connection(reader, writer)


async def _adopt(sock: socket.socket) -> _Connection:
    """A connection on a socket connected elsewhere (``early.py``)."""
    reader, writer = await asyncio.open_connection(sock=sock, limit=STREAM_LIMIT)
    return _Connection(reader, writer)


async def _read_head(
    reader: asyncio.StreamReader, read_timeout: float | None
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """The status, headers and reason of the answer (informational 1xx heads skipped)."""
    while True:
        try:
            async with asyncio.timeout(read_timeout):
                raw = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                raise _Stale() from exc
            raise RemoteProtocolError("the answer's head was cut short") from exc
        except asyncio.LimitOverrunError as exc:
            raise RemoteProtocolError("the answer's head is too long") from exc
        except TimeoutError as exc:
            raise ReadTimeout("timed out waiting for the answer") from exc
        except OSError as exc:
            raise _Stale() from exc
        lines = raw[:-4].split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise RemoteProtocolError(f"not an HTTP/1.1 answer: {lines[0][:80]!r}")
        status = int(parts[1])
        if 100 <= status < 200:
            continue
        headers = []
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon:
                raise RemoteProtocolError(f"a malformed header line: {line[:80]!r}")
            headers.append((name.strip(), value.strip()))
        return status, headers, parts[2] if len(parts) > 2 else b""


class _Body:
    """The response body, framed as its headers say; the connection goes back to the pool once
    it was read to its end, and is closed otherwise."""

    def __init__(
        self,
        client: HTTP11Client,
        key: Address,
        conn: _Connection,
        method: str,
        headers: Headers,
        status: int,
        timeout: float | None,
    ) -> None:
        self._client, self._key, self._conn = client, key, conn
        self._timeout = timeout
        self._done = False
        self._reusable = "close" not in headers.get("connection", "").lower()
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = headers.get("content-length", "")
        self._length: int | None = int(length) if length.isdigit() else None
        if method == "HEAD" or status in _NO_BODY_STATUSES:
            self._chunked, self._length = False, 0
        elif not self._chunked and self._length is None:
            self._reusable = False  # the body ends when the server closes the connection

    async def chunks(self) -> AsyncIterator[bytes]:
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
                        raise RemoteProtocolError(
                            f"the server closed the connection {left} bytes before the end "
                            f"of a {self._length}-byte body"
                        )
                    left -= len(data)
                    yield data
            else:
                while data := await self._read(READ_BYTES):
                    yield data
            self._done = True
        except asyncio.IncompleteReadError as exc:
            raise RemoteProtocolError(
                "the server closed the connection in the middle of a chunk"
            ) from exc
        except ValueError as exc:
            raise RemoteProtocolError(f"a malformed chunk: {exc}") from exc

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
            raise ReadTimeout("timed out reading the answer") from exc
        except asyncio.LimitOverrunError as exc:
            raise RemoteProtocolError("a chunk header too long") from exc
        except (ConnectionError, OSError) as exc:
            raise ReadError(str(exc) or type(exc).__name__) from exc

    def close(self) -> None:
        if self._done and self._reusable:
            self._client._put(self._key, self._conn)
        else:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._done, self._reusable = True, False  # a second close does nothing
