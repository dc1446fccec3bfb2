"""A pack part is used only if its size and sha256 are the ones promised; a broken transfer
resumes from where it stopped, an expired URL is renewed, a big part comes in parallel ranges.

These run against ``httpx.MockTransport`` storage; ``test_resume_storage.py`` does the same
against the real storage backends over TCP.
"""

from __future__ import annotations

import hashlib
import io
import re
import time

import httpx
import pytest

from musehub.client.download import PackPart, RetryPolicy, stream_part
from musehub.client.errors import DownloadError
from musehub.client.progress import ByteProgress

DATA = bytes(range(256)) * 4_000  # 1,024,000 bytes
SHA = hashlib.sha256(DATA).hexdigest()
URL = "http://blobs.test/p"
FAST = RetryPolicy(attempts=4, first_backoff_s=0.001, max_backoff_s=0.002)


class Storage:
    """Serves DATA with Range support; can break a response after N bytes, or refuse URLs."""

    def __init__(self, data: bytes = DATA) -> None:
        self.data = data
        self.ranges: list[str | None] = []
        self.sent = 0
        self.break_after: int | None = None  # the first response stops after this many bytes
        self.valid_urls = {URL}

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.ranges.append(request.headers.get("range"))
        if str(request.url) not in self.valid_urls:
            return httpx.Response(403, text="this link has expired")
        start, end = 0, len(self.data)
        status = 200
        if request.headers.get("range"):
            match = re.fullmatch(r"bytes=(\d+)-(\d+)", request.headers["range"])
            assert match
            start, end, status = int(match[1]), int(match[2]) + 1, 206
        body = self.data[start:end]
        headers = {"content-range": f"bytes {start}-{end - 1}/{len(self.data)}"}
        if self.break_after is not None:
            cut, self.break_after = self.break_after, None
            return httpx.Response(status, headers=headers, stream=_Broken(body[:cut], self))
        self.sent += len(body)
        return httpx.Response(status, headers=headers, content=body)


class _Broken(httpx.AsyncByteStream):
    def __init__(self, head: bytes, storage: Storage) -> None:
        self.head, self.storage = head, storage

    async def __aiter__(self):  # type: ignore[no-untyped-def]
        self.storage.sent += len(self.head)
        yield self.head
        raise httpx.ReadError("connection reset by peer")


async def _stream(storage: Storage, part: PackPart | None = None, **kw: object) -> bytes:
    out = bytearray()

    async def write(data: bytes) -> None:
        out.extend(data)

    async with httpx.AsyncClient(transport=httpx.MockTransport(storage.handle)) as http:
        await stream_part(http, part or PackPart(URL, len(DATA), SHA), write, policy=FAST, **kw)  # type: ignore[arg-type]
    return bytes(out)


async def test_matching_download_is_streamed_whole() -> None:
    storage = Storage()
    assert await _stream(storage) == DATA
    assert storage.ranges == [None]  # one plain GET


async def test_wrong_sha256_is_rejected() -> None:
    with pytest.raises(DownloadError, match="sha256"):
        await _stream(Storage(), PackPart(URL, len(DATA), "0" * 64))


async def test_short_download_is_rejected() -> None:
    with pytest.raises(DownloadError, match=r"cut short|broke|closed"):
        await _stream(Storage(), PackPart(URL, len(DATA) + 1, SHA))


async def test_long_download_is_stopped() -> None:
    with pytest.raises(DownloadError, match="larger"):
        await _stream(Storage(), PackPart(URL, len(DATA) - 1, SHA))


@pytest.mark.parametrize(
    "response",
    [httpx.Response(403, text="expired"), httpx.Response(302, headers={"location": "http://x/p"})],
)
async def test_http_error_and_redirect_are_rejected(response: httpx.Response) -> None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: response)) as http:

        async def write(data: bytes) -> None:
            raise AssertionError("no bytes expected")

        with pytest.raises(DownloadError, match="HTTP"):
            await stream_part(http, PackPart(URL, 1, SHA), write, policy=FAST)


async def test_a_broken_transfer_resumes_where_it_stopped() -> None:
    storage = Storage()
    storage.break_after = len(DATA) // 2
    assert await _stream(storage) == DATA
    assert storage.ranges == [None, f"bytes={len(DATA) // 2}-{len(DATA) - 1}"]
    assert storage.sent == len(DATA)  # the first half was not sent again


async def test_an_expired_url_is_renewed_on_403() -> None:
    storage = Storage()
    storage.valid_urls = {"http://blobs.test/fresh"}
    calls = []

    async def refresh() -> PackPart:
        calls.append(1)
        return PackPart("http://blobs.test/fresh", len(DATA), SHA, time.time() + 900)

    assert await _stream(storage, refresh=refresh) == DATA
    assert len(calls) == 1


async def test_a_url_past_its_expiry_is_renewed_before_use() -> None:
    storage = Storage()
    storage.valid_urls = {"http://blobs.test/fresh"}

    async def refresh() -> PackPart:
        return PackPart("http://blobs.test/fresh", len(DATA), SHA, time.time() + 900)

    part = PackPart(URL, len(DATA), SHA, expires_at=time.time() - 1)
    assert await _stream(storage, part, refresh=refresh) == DATA
    assert storage.ranges == [None]  # the stale URL was never tried


async def test_a_renewed_url_for_another_pack_is_refused() -> None:
    storage = Storage()
    storage.valid_urls = set()

    async def refresh() -> PackPart:
        return PackPart("http://blobs.test/fresh", len(DATA), "1" * 64)

    with pytest.raises(DownloadError, match="different pack"):
        await _stream(storage, refresh=refresh)


async def test_retries_give_up_with_a_clear_message() -> None:
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(lambda r: httpx.Response(503, text="busy"))
    ) as http:

        async def write(data: bytes) -> None: ...

        with pytest.raises(DownloadError, match="4 times in a row"):
            await stream_part(http, PackPart(URL, 10, SHA), write, policy=FAST)


async def test_a_big_part_comes_in_parallel_ranges_in_order() -> None:
    storage = Storage()
    storage.break_after = 1000  # one range breaks and resumes too
    got = await _stream(storage, parallel=3, parallel_min_bytes=100_000, chunk_bytes=300_000)
    assert got == DATA
    asked = sorted(r for r in storage.ranges if r)
    assert "bytes=0-299999" in asked and "bytes=900000-1023999" in asked
    assert storage.sent == len(DATA)


def test_progress_line_and_silence_for_small_answers() -> None:
    out = io.StringIO()
    bar = ByteProgress("Downloading pack", 4 * 1024 * 1024, stream=out, interval=0)
    bar.advance(2 * 1024 * 1024)
    bar.finish()
    assert "Downloading pack: 2.0 MiB / 4.0 MiB (50%)" in out.getvalue()
    assert out.getvalue().endswith("\n") and "MiB/s" in out.getvalue()

    quiet = io.StringIO()
    small = ByteProgress("Receiving pack", stream=quiet, min_bytes=1024)
    small.advance(300)
    small.finish()
    assert quiet.getvalue() == ""
