"""Download one pack part by URL: resumable, retried, ranged in parallel when big, checked.

``stream_part`` hands the part's bytes, in order, to an async ``write`` (the clone feeds them to
the pack decoder as they arrive) and checks the size and sha256 the hub promised once the last
byte is in; the caller must not treat what it decoded as good before ``stream_part`` returns.

- **Resume.** A broken transfer is retried from the byte where it stopped, with
  ``Range: bytes=<pos>-<end>``: bytes already received are never fetched again. Retries back off
  exponentially (with jitter) and give up after ``RetryPolicy.attempts`` failures in a row
  without progress.
- **Expired URLs.** Before a request whose URL is past ``expires_at``, and on a 403 from
  storage, ``refresh`` asks the hub for a fresh URL of the same part (a new ``POST /fetch``);
  parallel ranges that meet the same expired URL share one refresh.
- **Parallel ranges.** A part over ``PARALLEL_MIN_BYTES`` is fetched as ``RANGE_CHUNK_BYTES``
  ranges, ``PARALLEL_RANGES`` GETs at a time, and the ranges are handed to ``write`` in order.
  A range that arrives early waits in memory, and no range starts more than ``parallel`` ranges
  ahead of the one being written, so at most ``parallel * chunk`` bytes (16 MiB) are buffered
  whatever the pack's size. In-order streaming (rather than writing ranges to their place in a
  file) keeps "decode while downloading" and leaves no file of the whole pack on disk.

A URL answer's parts (one pack, or a chain's base and top-ups) are downloaded by ``parts.py``,
which calls ``stream_part`` for each.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, NamedTuple

from musehub.client.errors import DownloadError
from musehub.client.session import transport_errors, unsupported_protocol_errors

if TYPE_CHECKING:
    from musehub.client.progress import ByteProgress
    from musehub.client.session import Response, Session

MiB = 1024 * 1024
DOWNLOAD_TIMEOUT_S = 60.0
PARALLEL_MIN_BYTES = 32 * MiB
RANGE_CHUNK_BYTES = 4 * MiB
PARALLEL_RANGES = 4
EXPIRY_MARGIN_S = 5.0  # refresh a URL this close to its end rather than have it die mid-range
_RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})

Write = Callable[[bytes], Awaitable[None]]


# A NamedTuple, not a frozen dataclass: the same immutable record without ~1 ms of generated
# methods at import, which every clone paid (about 10 ms over the client's record types).
class PackPart(NamedTuple):
    """One pack (or one part of a chain) at a URL: its size and sha256 as the hub promised."""

    url: str
    size: int
    sha256: str
    expires_at: float | None = None  # unix time; None when the hub did not say
    encoding: str | None = None  # "zstd": the bytes served are the pack compressed (mpack-zstd)
    decoded_size: int | None = None  # the pack's own size, when encoded


Refresh = Callable[[], Awaitable[PackPart]]


class RetryPolicy(NamedTuple):
    attempts: int = 6  # failures in a row without a byte of progress
    first_backoff_s: float = 0.25
    max_backoff_s: float = 8.0

    def backoff(self, attempt: int) -> float:
        ceiling = min(self.max_backoff_s, self.first_backoff_s * 2 ** (attempt - 1))
        return ceiling * random.uniform(0.5, 1.0)


DEFAULT_RETRY = RetryPolicy()  # immutable: one shared default is safe


class _Cursor:
    __slots__ = ("pos",)

    def __init__(self, pos: int) -> None:
        self.pos = pos


class _Retry(Exception):
    """A failure worth another attempt (a broken connection, a 5xx)."""


async def stream_part(
    http: Session,
    part: PackPart,
    write: Write,
    *,
    refresh: Refresh | None = None,
    progress: ByteProgress | None = None,
    policy: RetryPolicy = DEFAULT_RETRY,
    parallel: int = PARALLEL_RANGES,
    parallel_min_bytes: int = PARALLEL_MIN_BYTES,
    chunk_bytes: int = RANGE_CHUNK_BYTES,
) -> int:
    """Give ``write`` the part's bytes in order; raise ``DownloadError`` unless they are the
    bytes promised. Returns the bytes received over the wire (more than the size after a
    retry re-sends a partial chunk)."""
    source = _Source(http, part, refresh, policy, progress)
    digest = hashlib.sha256()
    written = 0

    async def emit(data: bytes) -> None:
        nonlocal written
        written += len(data)
        digest.update(data)
        await write(data)

    if parallel > 1 and part.size > parallel_min_bytes:
        await _ranges_in_order(source, emit, parallel, chunk_bytes)
    else:
        await source.fetch(0, part.size, emit)
    check_download(written, digest.hexdigest(), part.size, part.sha256)
    return source.received


def check_download(size: int, sha256: str, expected_size: int, expected_sha256: str) -> None:
    """Raise ``DownloadError`` unless the bytes received are the bytes promised."""
    if size != expected_size:
        raise DownloadError(
            f"pack download is {size} bytes, the remote promised {expected_size}; "
            "the transfer was cut short, run it again"
        )
    if sha256 != expected_sha256.lower():
        raise DownloadError(
            f"pack sha256 is {sha256}, the remote promised {expected_sha256}; "
            "the pack is corrupt, run it again or report it to the hub's operator"
        )


async def _ranges_in_order(source: _Source, emit: Write, parallel: int, chunk: int) -> None:
    size = source.part.size
    ranges = iter([(start, min(start + chunk, size)) for start in range(0, size, chunk)])
    pending: deque[asyncio.Task[list[bytes]]] = deque()

    def start_next() -> None:
        span = next(ranges, None)
        if span is not None:
            pending.append(asyncio.create_task(source.fetch_pieces(*span)))

    try:
        for _ in range(parallel):
            start_next()
        while pending:
            pieces = await pending.popleft()
            while pieces:
                await emit(pieces.pop(0))  # each piece freed once the decoder has it
            start_next()  # after the write: never more than `parallel` ranges held
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


class _Source:
    """The part's current URL, its refreshes, and ranged GETs with resume and retries."""

    def __init__(
        self,
        http: Session,
        part: PackPart,
        refresh: Refresh | None,
        policy: RetryPolicy,
        progress: ByteProgress | None,
    ) -> None:
        self.http = http
        self.part = part
        self.received = 0
        self._refresh = refresh
        self._policy = policy
        self._progress = progress
        self._refreshing = asyncio.Lock()
        self._renewed_at = float("-inf")

    async def fetch_pieces(self, start: int, end: int) -> list[bytes]:
        """Bytes ``[start, end)`` as received, in order (kept apart: no copy to join them)."""
        pieces: list[bytes] = []

        async def keep(data: bytes) -> None:
            pieces.append(data)

        await self.fetch(start, end, keep)
        return pieces

    async def fetch(self, start: int, end: int, emit: Write) -> None:
        """Emit bytes ``[start, end)``, resuming after every break until the retries run out."""
        cursor, failures = _Cursor(start), 0
        while cursor.pos < end:
            url = await self._usable_url()
            before = cursor.pos
            try:
                await self._get(url, cursor, end, emit)
            except _Retry as exc:
                if cursor.pos > before:
                    failures = 0  # progress was made: only failures in a row count
                failures += 1
                if failures >= self._policy.attempts:
                    raise DownloadError(
                        f"pack download failed {failures} times in a row ({exc}); "
                        "check the network and run it again"
                    ) from exc
                await asyncio.sleep(self._policy.backoff(failures))
                continue
            failures = 0

    async def _get(self, url: str, cursor: _Cursor, end: int, emit: Write) -> None:
        """One GET from ``cursor.pos``, advancing it. Raises ``_Retry`` to go on from there."""
        pos = cursor.pos
        whole = pos == 0 and end == self.part.size
        headers = {} if whole else {"Range": f"bytes={pos}-{end - 1}"}
        try:
            async with self.http.stream(
                "GET", url, headers=headers, follow_redirects=False, timeout=DOWNLOAD_TIMEOUT_S
            ) as resp:
                skip = await self._check_status(resp, url, pos, whole)
                async for chunk in resp.aiter_bytes():
                    self.received += len(chunk)
                    if skip:  # a server that ignored Range: drop what we already have
                        dropped = min(skip, len(chunk))
                        chunk, skip = chunk[dropped:], skip - dropped
                    if pos + len(chunk) > end:
                        if resp.status_code == 200 and not whole:
                            chunk = chunk[: end - pos]
                        else:
                            raise DownloadError(
                                f"pack download is larger than the {self.part.size} bytes "
                                "promised; the remote sent a different pack, run it again"
                            )
                    if chunk:
                        await emit(chunk)
                        pos = cursor.pos = pos + len(chunk)
                        if self._progress is not None:
                            self._progress.advance(len(chunk))
                    if pos >= end and resp.status_code == 200 and not whole:
                        return  # the rest is bytes we have (Range ignored): drop the connection
                # Read to the body's end even once every byte is in: a response left unfinished
                # closes its connection, and the next part would pay a new TCP connect.
        except unsupported_protocol_errors() as exc:
            raise DownloadError(f"cannot download the pack from {url}: {exc}") from exc
        except transport_errors() as exc:
            raise _Retry(f"the connection broke at byte {pos}: {exc}") from exc
        if pos < end:
            raise _Retry(f"the connection closed at byte {pos} of {self.part.size}")

    async def _check_status(self, resp: Response, url: str, pos: int, whole: bool) -> int:
        """Bytes to drop from the body's start (a 200 to a ranged GET), or raise."""
        status = resp.status_code
        if status == 206 and not whole:
            if not resp.headers.get("content-range", "").startswith(f"bytes {pos}-"):
                raise _Retry(f"storage answered a range other than the one asked for (at {pos})")
            return 0
        if status == 200:
            return pos
        if status == 403 and self._refresh is not None:
            await self._renew(url)
            raise _Retry("the pack URL was refused (expired); asked the hub for a fresh one")
        if status in _RETRY_STATUSES:
            raise _Retry(f"storage answered HTTP {status}")
        hint = "the pack URL may have expired" if status == 403 else "the pack is not there"
        if 300 <= status < 400:
            hint = "redirects are refused"
        raise DownloadError(f"pack download failed with HTTP {status}; {hint}, run it again")

    async def _usable_url(self) -> str:
        expires, now = self.part.expires_at, time.monotonic()
        # A fresh URL that already looks expired (a skewed clock) is tried anyway: a 403 says.
        if self._refresh is not None and expires is not None and now - self._renewed_at > 60:
            if time.time() + EXPIRY_MARGIN_S >= expires:
                await self._renew(self.part.url)
        return self.part.url

    async def _renew(self, stale_url: str) -> None:
        """Ask for a fresh URL once, however many ranges found ``stale_url`` dead."""
        assert self._refresh is not None
        async with self._refreshing:
            if self.part.url != stale_url:
                return  # another range renewed it meanwhile
            fresh = await self._refresh()
            if (fresh.size, fresh.sha256.lower()) != (self.part.size, self.part.sha256.lower()):
                raise DownloadError(
                    "the hub now serves a different pack for this clone (the repository "
                    "changed during the download); run it again"
                )
            self.part = self.part._replace(url=fresh.url, expires_at=fresh.expires_at)
            self._renewed_at = time.monotonic()
