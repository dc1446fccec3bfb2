"""Download a URL answer's packs, a few at once, and hand them to a decoder thread in order.

A chain (``mpack-chain``) is a base and top-ups to apply in order; a one-URL answer is a chain
of one. Each part's bytes reach the decoder through a ``pipe.BytePipe`` of its own, and the
decoder reads the parts one after the other while they arrive:

- The part being decoded streams through a small pipe: no file of it is ever written.
- Up to ``PARALLEL_PARTS`` parts download at once. The parts after the one being decoded are
  fetched ahead, into memory, as long as what waits ahead stays under ``AHEAD_BYTES``: a
  chain's top-ups are small and arrive while the base decodes, instead of costing a round trip
  each after it. A part bigger than that starts when the decoder reaches the part before it,
  through a bounded pipe, so memory stays bounded whatever the chain's shape.
- ``newest_first`` is the order a clone decodes a chain in: its head is checked out on the way.
- Each part is ``download.stream_part``: resumed with ``Range`` after a break, its URL
  refreshed when it expired, its size and sha256 checked as the bytes stream. The decoder sees
  a part's end only once they matched, and a bad part stops everything (the caller discards
  what was decoded).
- ``part_sink`` is the one place where a part's bytes as served become the pack bytes the
  decoder reads: where a per-part encoding (``mpack-zstd``) is undone.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import TYPE_CHECKING, BinaryIO, TypeVar

from musehub.client.download import DEFAULT_RETRY, PackPart, RetryPolicy, stream_part
from musehub.client.encoding import Decoding, decoding
from musehub.client.errors import DownloadError, RemoteError
from musehub.client.pipe import PIPE_CAPACITY, BytePipe, PipeAborted
from musehub.client.wire import MPackURL

if TYPE_CHECKING:
    from musehub.client.progress import ByteProgress
    from musehub.client.session import Session
    from musehub.client.wire import MuseRemote

PARALLEL_PARTS = 4
AHEAD_BYTES = 16 * 1024 * 1024


T = TypeVar("T")
# Given the part whose URL went stale, the same part (same sha256) at a fresh URL.
RefreshPart = Callable[[PackPart], Awaitable[PackPart]]
# Runs in a thread; reads each part's stream to its end, in order.
Decode = Callable[[Iterator[BinaryIO]], T]


def refresh_by_fetch(
    remote: MuseRemote, want: Sequence[str], have: Sequence[str], capabilities: Sequence[str]
) -> RefreshPart:
    """Fresh URLs come from the same ``POST /fetch`` again: the part with the same sha256. The
    parts of an answer expire together, so one fresh answer serves every part that asks."""
    lock = asyncio.Lock()
    latest: dict[str, PackPart] = {}  # sha256 -> the part in the freshest answer

    async def refresh(stale: PackPart) -> PackPart:
        key = stale.sha256.lower()
        async with lock:
            known = latest.get(key)
            if known is None or known == stale:  # none yet, or the freshest one died too
                latest.clear()
                latest.update({p.sha256.lower(): p for p in await _fetch_parts()})
            fresh = latest.get(key)
        if fresh is None:
            raise DownloadError(
                "the hub now serves different packs for this request (the repository changed "
                "during the download); run it again"
            )
        return fresh

    async def _fetch_parts() -> tuple[PackPart, ...]:
        try:
            fresh = await remote.fetch(want, have, capabilities)
        except RemoteError as exc:
            raise DownloadError(f"cannot get a fresh pack URL ({exc}); run it again") from exc
        if not isinstance(fresh, MPackURL):
            fresh.path.unlink(missing_ok=True)
            raise DownloadError("the hub stopped answering with pack URLs; run it again")
        return fresh.parts

    return refresh


def newest_first(parts: Sequence[PackPart]) -> tuple[PackPart, ...]:
    """A chain's parts in the order to decode them: the newest top-up first, then the others in
    chain order. The newest part holds the newest commits, so usually the head being checked
    out and its snapshot: known before the base's objects stream by, each file of the tree is
    written as its object arrives, instead of copied from the object store once every part is
    in (the gabriel chain's 171 files, 18-31 ms at the end of a clone). Records are checked
    by their ids and applied as sets, so the order changes nothing else."""
    return (parts[-1], *parts[:-1]) if len(parts) > 1 else tuple(parts)


def _held(part: PackPart) -> int:
    """The bytes a part fetched ahead holds in memory: the pack's, once decoded."""
    return part.decoded_size if part.decoded_size is not None else part.size


def part_sink(part: PackPart, pipe: BytePipe) -> Decoding:
    """Where a part's bytes as served become the pack bytes the decoder reads: the one place a
    per-part encoding (``mpack-zstd``) is undone, by wrapping ``pipe.write``."""
    return decoding(part.encoding, pipe.write, decoded_size=part.decoded_size)


async def stream_parts(
    http: Session,
    parts: Sequence[PackPart],
    decode: Decode[T],
    *,
    refresh: RefreshPart | None = None,
    progress: ByteProgress | None = None,
    parallel: int = PARALLEL_PARTS,
    ahead_bytes: int = AHEAD_BYTES,
    policy: RetryPolicy = DEFAULT_RETRY,
) -> T:
    """Download ``parts`` while ``decode`` reads them in a thread; return what it returns.

    Raises the first failure, of a download (``DownloadError``) or of the decoder, after the
    decoder thread has stopped: nothing writes on behalf of this call once it has returned.
    """
    streams = _PartStreams(http, parts, refresh, progress, parallel, ahead_bytes, policy)
    return await streams.run(decode)


class _PartStreams:
    def __init__(
        self,
        http: Session,
        parts: Sequence[PackPart],
        refresh: RefreshPart | None,
        progress: ByteProgress | None,
        parallel: int,
        ahead_bytes: int,
        policy: RetryPolicy,
    ) -> None:
        self._http = http
        self._policy = policy
        self._parts = list(parts)
        self._refresh = refresh
        self._progress = progress
        self._parallel = max(1, parallel)
        self._ahead_bytes = ahead_bytes
        self._loop = asyncio.get_running_loop()
        # A part fetched ahead fits its pipe whole, so its download never waits on the decoder.
        # Pipes hold a part's pack bytes, so its decoded size counts, not the bytes served.
        self._pipes = [
            BytePipe(max(PIPE_CAPACITY, _held(p)) if _held(p) <= ahead_bytes else PIPE_CAPACITY)
            for p in self._parts
        ]
        self._reading = 0  # the part the decoder is at
        self._turn = asyncio.Event()  # set when the decoder moves on to the next part, or fails
        self._decoder_failed: BaseException | None = None

    async def run(self, decode: Decode[T]) -> T:
        downloads = asyncio.ensure_future(self._download_all())
        # Two turns of the loop: the downloads start, then send their first requests (a pooled
        # connection writes at once). Only then does the decoder's thread start: its start-up
        # (a clone's folders) would hold the GIL while the requests wait to go out.
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        decoder = asyncio.ensure_future(asyncio.to_thread(self._decode, decode))
        try:
            await downloads
        except BaseException as exc:
            downloads.cancel()
            self._abort(exc)
            with contextlib.suppress(BaseException):
                await decoder  # the thread stops at its next read; wait so it writes no more
            failed = decoder.exception() if decoder.done() and not decoder.cancelled() else None
            if isinstance(exc, PipeAborted) and failed is not None:
                raise failed from None  # the decoder stopped first: its error is the cause
            raise
        return await decoder

    # -- the event loop: downloads --------------------------------------------------------

    async def _download_all(self) -> None:
        started = 0
        running: set[asyncio.Task[None]] = set()
        try:
            while started < len(self._parts) or running:
                self._turn.clear()
                while started < len(self._parts) and self._may_start(started, len(running)):
                    running.add(asyncio.create_task(self._download(started)))
                    started += 1
                turn = asyncio.create_task(self._turn.wait())
                done, _ = await asyncio.wait(running | {turn}, return_when=asyncio.FIRST_COMPLETED)
                turn.cancel()
                if self._decoder_failed is not None:  # maybe while no download was running
                    raise PipeAborted("the pack reader stopped") from self._decoder_failed
                for task in done - {turn}:
                    running.discard(task)
                    task.result()  # a failed part stops the whole answer
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    def _may_start(self, index: int, running: int) -> bool:
        if running >= self._parallel:
            return False
        if index <= self._reading + 1:
            # The decoder waits for it, or will next: a big part's pipe is bounded, so starting
            # it early costs that much memory and saves the round trip its first bytes take.
            return True
        waiting = sum(_held(p) for p in self._parts[self._reading + 1 : index])
        return waiting + _held(self._parts[index]) <= self._ahead_bytes

    async def _download(self, index: int) -> None:
        part, pipe = self._parts[index], self._pipes[index]

        latest = part

        async def refresh() -> PackPart:
            nonlocal latest
            assert self._refresh is not None
            latest = await self._refresh(latest)  # the URL that died: never the first again
            return latest

        sink = part_sink(part, pipe)
        await stream_part(
            self._http,
            part,
            sink.write,
            refresh=refresh if self._refresh is not None else None,
            progress=self._progress,
            policy=self._policy,
        )
        sink.finish()
        pipe.close()  # only now, with size and sha256 checked, does the decoder see the end

    def _abort(self, error: BaseException) -> None:
        for pipe in self._pipes:
            pipe.abort(error)

    # -- the decoder thread ----------------------------------------------------------------

    def _decode(self, decode: Decode[T]) -> T:
        try:
            return decode(self._readers())
        except BaseException as exc:
            self._abort(exc)  # stop the downloads: what they bring is no good now
            self._loop.call_soon_threadsafe(self._stopped, exc)
            raise

    def _readers(self) -> Iterator[BinaryIO]:
        for index, pipe in enumerate(self._pipes):
            self._loop.call_soon_threadsafe(self._reached, index)
            yield pipe  # type: ignore[misc]  # file-like: read(n)

    def _reached(self, index: int) -> None:
        self._reading = index
        self._turn.set()

    def _stopped(self, error: BaseException) -> None:
        self._decoder_failed = error
        self._turn.set()
