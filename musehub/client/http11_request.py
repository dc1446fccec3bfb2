"""An HTTP/1.1 request as bytes, and where it goes: without asyncio, so that a request can be
built (and sent, ``early.EarlyRequest``) before asyncio is imported. ``http11.HTTP11Client``
builds every request here, so an early request and the one the client would send are the same
bytes."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from urllib.parse import quote, urlsplit

from musehub.client.session import UnsupportedProtocol

USER_AGENT = "musehub-client"
_URL_SAFE = "!$&'()*+,;=:@/?%-._~"

Address = tuple[str, int]


def route(url: str, proxy: Address | None) -> tuple[Address, str, str]:
    """Where a request for ``url`` connects, its request target and its ``Host``: the origin
    form to the URL's host, or the absolute form to ``proxy`` unless ``NO_PROXY`` names the
    host."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise UnsupportedProtocol(
            f"the URL scheme {parts.scheme!r} is not supported (http or https)"
        )
    host = parts.netloc.rpartition("@")[2]
    # What httpx sent: the path and query, anything outside URL characters percent-encoded.
    target = quote(parts.path or "/", safe=_URL_SAFE)
    if parts.query:
        target += "?" + quote(parts.query, safe=_URL_SAFE)
    if proxy is not None and not _bypass(parts.hostname):
        return proxy, f"http://{host}{target}", host  # absolute form
    return (parts.hostname, parts.port or 80), target, host


def proxy_address(proxy: str) -> Address:
    """Where an ``http://host:port`` proxy listens."""
    via = urlsplit(proxy)
    if via.scheme != "http" or not via.hostname:
        raise ValueError(f"not an http:// proxy: {proxy!r}")
    return via.hostname, via.port or 80


def request_bytes(
    method: str,
    target: str,
    host: str,
    headers: Iterable[Mapping[str, str]],
    body: bytes,
) -> bytes:
    """The request's head and body; ``headers`` in order, a later one replacing an earlier one
    of the same name. The framing is always ours: the body is whole in memory."""
    fields = {"host": ("Host", host), "user-agent": ("User-Agent", USER_AGENT)}
    fields["accept-encoding"] = ("Accept-Encoding", "identity")  # bodies are read as sent
    for given in headers:
        for name, value in given.items():
            fields[name.lower()] = (name, value)
    for framing in ("content-length", "transfer-encoding", "connection"):
        fields.pop(framing, None)
    if body or method not in ("GET", "HEAD"):
        fields["content-length"] = ("Content-Length", str(len(body)))
    lines = [f"{method} {target} HTTP/1.1", *(f"{n}: {v}" for n, v in fields.values())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _bypass(host: str) -> bool:
    """Whether ``NO_PROXY`` sends ``host`` direct. Without such a variable (on Linux and the
    other POSIX systems, where urllib reads only the environment) the answer is no, known
    without importing urllib's request module: with ``ssl``, ``email`` and ``http.client``,
    70-120 ms here, which a clone through a proxy paid before its first request."""
    if sys.platform not in ("darwin", "win32") and not any(
        os.environ.get(name) for name in ("no_proxy", "NO_PROXY")
    ):
        return False
    import urllib.request

    return bool(urllib.request.proxy_bypass(host))
