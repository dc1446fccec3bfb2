"""A clone's (or a pull's) first request, sent while the client is still loading.

``musehub clone`` spends its first ~100 ms importing (asyncio alone is most of it on a 2-core
machine) before it could send anything, and through a real link the answer then takes a round
trip more. So the command sends the first request at once, from a thread on a plain blocking
socket: ``POST /fetch`` for the head set with the refs (``clone_request``), the same bytes
``http11.HTTP11Client`` would send. The thread only connects and writes; the answer waits in
the socket until the client, loaded, asks for it: the ``HTTP11Client`` given this request
takes the socket over (``claim``) when its own first request is these bytes to that address,
and reads the answer with its usual code. Any other request, or a failure to connect or send
here, and the socket is closed: the client then sends the request itself, as it would have,
and reports what goes wrong.

Only for what ``HTTP11Client`` speaks (an ``http://`` hub, directly or through one ``http://``
proxy); ``https://`` and other proxies go through httpx and are not sent early. Imports no
asyncio."""

from __future__ import annotations

import socket
import threading
from collections.abc import Mapping, Sequence

import msgpack

from musehub.client.clone_request import ACCEPT, MSGPACK, REQUEST_TIMEOUT_S, head_set_body
from musehub.client.http11_request import Address, proxy_address, request_bytes, route
from musehub.client.session import UnsupportedProtocol, http11_proxy


class EarlyRequest:
    """``message`` sent to ``address`` from a thread, started at once."""

    def __init__(self, address: Address, message: bytes, *, timeout: float) -> None:
        self.address = address
        self.message = message
        self._sock: socket.socket | None = None
        self._sent = threading.Event()
        self._closed = False
        # A daemon: a command that fails before it claims the socket does not wait on a connect.
        threading.Thread(
            target=self._send, args=(timeout,), name="early-request", daemon=True
        ).start()

    def done(self) -> bool:
        return self._sent.is_set()

    def claim(self, address: Address, message: bytes) -> socket.socket | None:
        """The socket the request went out on, its answer unread, when ``message`` to
        ``address`` is that request; None otherwise (and once claimed). Waits for the send."""
        self._sent.wait()
        sock, self._sock = self._sock, None
        if sock is not None and (address, message) != (self.address, self.message):
            sock.close()
            return None
        return sock

    def close(self) -> None:
        """Drop the socket if nobody claimed it (now, or once it is connected)."""
        self._closed = True
        if self.done() and self._sock is not None:
            self._sock.close()
            self._sock = None

    def _send(self, timeout: float) -> None:
        try:
            sock = socket.create_connection(self.address, timeout=timeout)
        except OSError:
            self._sent.set()
            return
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(self.message)
        except OSError:
            sock.close()
        else:
            self._sock = sock
        self._sent.set()
        if self._closed:  # closed while this connected: nobody will claim it
            self.close()


def send_head_set_request(
    base_url: str, capabilities: Sequence[str], have: Sequence[str] = ()
) -> EarlyRequest | None:
    """The clone's ``POST /fetch`` to ``base_url`` (a pull's, with its tips as ``have``), sent
    now; None when the client will not send it through ``HTTP11Client`` (an https:// hub, a
    proxy it does not speak, a bad URL: the client says what is wrong)."""
    served, proxy = http11_proxy()
    if not served or not base_url.startswith("http://"):
        return None
    headers: list[Mapping[str, str]] = [{"Accept": ACCEPT}, {"Content-Type": MSGPACK}]
    body = msgpack.packb(head_set_body(capabilities, have), use_bin_type=True)
    try:
        address, target, host = route(
            base_url.rstrip("/") + "/fetch", proxy_address(proxy) if proxy else None
        )
    except (UnsupportedProtocol, ValueError):
        return None
    message = request_bytes("POST", target, host, headers, body)
    return EarlyRequest(address, message, timeout=REQUEST_TIMEOUT_S)
