"""What the client needs of HTTP, and which implementation gives it.

The client makes plain requests and reads their answers as streams: ``session.stream(method,
url, content=, headers=, timeout=, follow_redirects=False)`` as an async context manager, and
of the answer ``status_code``, ``headers.get``, ``reason_phrase`` and ``aiter_bytes()``. That is
a subset of ``httpx.AsyncClient``'s API, so two things serve it:

- ``http11.HTTP11Client`` for the usual case, an ``http://`` hub with no proxy or an ``http://``
  one: it runs on asyncio's streams alone. ``import httpx`` (with httpcore, h11, ``email``,
  ``http.client`` and ``urllib.request``) was about a quarter of a small clone's CPU, and is
  not paid at all on that path.
- ``httpx.AsyncClient`` for the rest: a transport given by a caller (``httpx.ASGITransport``
  or ``MockTransport`` in tests), proxy settings other than a plain ``http://`` proxy, and
  ``https://`` URLs (which ``HTTP11Client`` hands to an ``httpx.AsyncClient`` of its own).

Failures of either are caught as ``transport_errors()`` and ``http_errors()``: our classes,
named as httpx's are, and httpx's own once httpx is loaded (an httpx error can only come from a
loaded httpx, so looking for one never imports it).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import httpx

    from musehub.client.early import EarlyRequest


class HTTPError(Exception):
    """A request failed before an answer could be read (``httpx.HTTPError``'s counterpart)."""


class TransportError(HTTPError):
    """The connection failed: worth a retry (``httpx.TransportError``)."""


class UnsupportedProtocol(TransportError):
    """A URL whose scheme is neither http nor https."""


class ConnectError(TransportError):
    pass


class ConnectTimeout(TransportError):
    pass


class ReadError(TransportError):
    pass


class ReadTimeout(TransportError):
    pass


class WriteTimeout(TransportError):
    pass


class RemoteProtocolError(TransportError):
    """The server broke HTTP/1.1: a cut body, a malformed head or chunk."""


ErrorTypes = tuple[type[BaseException], ...]


def http_errors() -> ErrorTypes:
    return _with_httpx(HTTPError, "HTTPError")


def transport_errors() -> ErrorTypes:
    return _with_httpx(TransportError, "TransportError")


def unsupported_protocol_errors() -> ErrorTypes:
    return _with_httpx(UnsupportedProtocol, "UnsupportedProtocol")


def _with_httpx(ours: type[BaseException], name: str) -> ErrorTypes:
    httpx = sys.modules.get("httpx")
    return (ours,) if httpx is None else (ours, getattr(httpx, name))


class Headers(Protocol):
    def get(self, key: str, default: Any = None) -> Any: ...


class Response(Protocol):
    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Headers: ...

    @property
    def reason_phrase(self) -> str: ...

    def aiter_bytes(self) -> Any: ...  # an async iterator of bytes


class Session(Protocol):
    def stream(
        self,
        method: str,
        url: str,
        *,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: Any = ...,
        follow_redirects: Any = ...,
    ) -> AbstractAsyncContextManager[Any]: ...

    async def aclose(self) -> None: ...


def open_session(
    transport: httpx.AsyncBaseTransport | None,
    *,
    timeout: float,
    headers: Mapping[str, str],
    early: EarlyRequest | None = None,
) -> Session:
    """``HTTP11Client`` unless a transport is given or the environment names a proxy it does
    not speak (anything but one ``http://`` proxy for http:// URLs): then ``httpx``, which reads
    those settings itself when built without a transport. ``early``: a request already sent
    (``early.py``), for ``HTTP11Client`` to take the answer of."""
    served, proxy = http11_proxy() if transport is None else (False, None)
    if served:
        from musehub.client.http11 import HTTP11Client

        return HTTP11Client(headers=headers, timeout=timeout, proxy=proxy, early=early)
    if early is not None:
        early.close()
    import httpx

    return httpx.AsyncClient(
        transport=transport, follow_redirects=False, timeout=httpx.Timeout(timeout), headers=headers
    )


def http11_proxy() -> tuple[bool, str | None]:
    """Whether ``HTTP11Client`` serves the client here (the environment names no proxy but one
    ``http://`` proxy for http:// URLs), and that proxy."""
    proxies = environment_proxies()
    plain_proxy = proxies.get("http", "")
    served = set(proxies) <= {"http"} and plain_proxy[:7] in ("", "http://")
    return served, plain_proxy or None


def environment_proxies() -> dict[str, str]:
    """``urllib.request.getproxies()`` less ``no``. On Linux and the other POSIX systems it reads
    only ``*_proxy`` variables: with none set, the answer is known without importing urllib's
    request module (and ``email`` and ``http.client`` with it)."""
    if sys.platform not in ("darwin", "win32") and not any(
        name.lower().endswith("_proxy") for name in os.environ
    ):
        return {}
    import urllib.request

    return {k: v for k, v in urllib.request.getproxies().items() if k != "no"}
