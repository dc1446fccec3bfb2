"""uvicorn's httptools protocol with deadlines for slow clients (issue 12, item 3).

uvicorn times out only an idle keep-alive connection: a client that sends its headers or body a
byte at a time, or connects and sends nothing, holds a connection for ever. This protocol adds
two deadlines, each one timer per connection or request (`loop.call_later`); per chunk it only
counts bytes:

- Headers: a request's headers must be complete within `header_timeout` of the connection
  opening or of the previous response. A client that has begun a request then gets `408 Request
  Timeout` (one text line) and the connection closes; a connection that sent nothing is closed
  without a word, as uvicorn closes an idle keep-alive one (a 408 nobody asked for could be read
  as the answer to a request already on its way).
- Body: from `body_grace` after the headers on, the body must have arrived at an average of at
  least `min_body_rate` bytes per second. Time when the server was not reading (the app had not
  taken what it got) does not count against the client. A body too slow closes the connection:
  the app's `receive()` answers `http.disconnect`.

`timed_protocol(limits)` is what uvicorn's `http=` takes (`api/server.py`)."""

from __future__ import annotations

import asyncio
import functools
import logging
from asyncio import TimerHandle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from uvicorn.config import Config
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from musehub.settings import ApiSettings

log = logging.getLogger("musehub.api.slow_clients")
# A body exactly at the minimum rate is checked again no sooner than this.
MIN_RECHECK_SECONDS = 0.5


@dataclass(frozen=True)
class SlowClientLimits:
    header_timeout: float
    body_grace: float
    min_body_rate: float  # bytes per second

    @classmethod
    def from_settings(cls, api: ApiSettings) -> SlowClientLimits:
        return cls(
            header_timeout=api.header_timeout_seconds,
            body_grace=api.body_grace_seconds,
            min_body_rate=api.min_body_bytes_per_second,
        )


def timed_protocol(limits: SlowClientLimits) -> type[asyncio.Protocol]:
    """The protocol class for uvicorn's `http=` (a partial: picklable, so `--workers` works)."""
    return cast("type[asyncio.Protocol]", functools.partial(TimedHttpProtocol, limits=limits))


class ReadPauseClock(FlowControl):
    """uvicorn's flow control, also keeping the total time reading was paused."""

    def __init__(self, transport: asyncio.Transport, clock: Callable[[], float]) -> None:
        super().__init__(transport)
        self._clock = clock
        self._paused_at = 0.0
        self._paused_before = 0.0

    def pause_reading(self) -> None:
        if not self.read_paused:
            self._paused_at = self._clock()
        super().pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused:
            self._paused_before += self._clock() - self._paused_at
        super().resume_reading()

    def paused_seconds(self, now: float) -> float:
        return self._paused_before + (now - self._paused_at if self.read_paused else 0.0)


class TimedHttpProtocol(HttpToolsProtocol):
    _clock: ReadPauseClock  # the connection's flow control, set when it is made

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: SlowClientLimits,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits
        self._header_timer: TimerHandle | None = None
        self._body_timer: TimerHandle | None = None
        self._request_begun = False  # bytes of a request whose headers are not complete yet
        self._body_pending = False  # headers complete, body not yet
        self._body_bytes = 0
        self._body_started = 0.0
        self._body_paused_before = 0.0

    # Connection events

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.flow = self._clock = ReadPauseClock(transport, self.loop.time)
        self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        self._stop_body_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._body_pending and self._body_timer is None and not self.transport.is_closing():
            # Armed here, not per header block: most bodies are complete in the same chunk.
            self._body_started = now = self.loop.time()
            self._body_paused_before = self._clock.paused_seconds(now)
            self._body_timer = self.loop.call_later(self.limits.body_grace, self._check_body)

    # Parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._request_begun = True

    def on_headers_complete(self) -> None:
        self._stop_header_timer()
        self._request_begun = False
        self._body_pending = True
        self._body_bytes = 0
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._body_pending = False
        self._stop_body_timer()
        super().on_message_complete()
        if self.cycle.response_complete:  # answered before its body was in: the next one's turn
            self._await_headers()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self._body_pending and self.cycle.response_complete:
            self._await_headers()  # unless a pipelined request has its headers in already

    # Deadlines

    def _await_headers(self) -> None:
        if self.transport.is_closing():
            return
        self._stop_header_timer()
        self._header_timer = self.loop.call_later(
            self.limits.header_timeout, self._headers_timed_out
        )

    def _headers_timed_out(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        responding = self.cycle is not None and not self.cycle.response_complete
        if self._request_begun and not responding:
            self.transport.write(self._timeout_response())
            log.info("%s: request headers incomplete after %g s; 408", self._who(), self._limit())
        self.transport.close()

    def _check_body(self) -> None:
        """Close a body behind the minimum rate, else look again when it could fall behind."""
        self._body_timer = None
        if not self._body_pending or self.transport.is_closing():
            return
        now = self.loop.time()
        paused = self._clock.paused_seconds(now) - self._body_paused_before
        sending_for = now - self._body_started - paused
        on_time_until = max(self.limits.body_grace, self._body_bytes / self.limits.min_body_rate)
        if sending_for >= on_time_until:
            log.info(
                "%s: request body at %d bytes after %.1f s, below %g bytes/s; closed",
                self._who(),
                self._body_bytes,
                sending_for,
                self.limits.min_body_rate,
            )
            self.transport.close()
            return
        self._body_timer = self.loop.call_later(
            max(on_time_until - sending_for, MIN_RECHECK_SECONDS), self._check_body
        )

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _stop_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _timeout_response(self) -> bytes:
        body = (
            f"Request Timeout: the request headers took longer than {self._limit()} s; "
            "send them at once\n"
        ).encode()
        lines = [STATUS_LINE[408]]
        for name, value in self.server_state.default_headers:
            lines += [name, b": ", value, b"\r\n"]
        lines += [
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
            body,
        ]
        return b"".join(lines)

    def _limit(self) -> str:
        return f"{self.limits.header_timeout:g}"

    def _who(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
