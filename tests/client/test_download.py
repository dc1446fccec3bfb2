"""A downloaded pack is used only if its size and sha256 are the ones promised."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import httpx
import pytest

from musehub.client.download import download_verified
from musehub.client.errors import DownloadError
from musehub.client.progress import ByteProgress

DATA = b"mpack bytes " * 10_000
SHA = hashlib.sha256(DATA).hexdigest()


def _client(response: httpx.Response) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(lambda r: response))


async def _get(dest: Path, *, size: int = len(DATA), sha: str = SHA, body: bytes = DATA) -> int:
    async with _client(httpx.Response(200, content=body)) as http:
        return await download_verified(
            http, "http://blobs.test/p", dest, expected_size=size, expected_sha256=sha
        )


async def test_matching_download_is_kept(tmp_path: Path) -> None:
    dest = tmp_path / "p.mpack"
    assert await _get(dest) == len(DATA)
    assert dest.read_bytes() == DATA


async def test_wrong_sha256_is_rejected_and_removed(tmp_path: Path) -> None:
    dest = tmp_path / "p.mpack"
    with pytest.raises(DownloadError, match="sha256"):
        await _get(dest, sha="0" * 64)
    assert not dest.exists()


async def test_short_download_is_rejected(tmp_path: Path) -> None:
    dest = tmp_path / "p.mpack"
    with pytest.raises(DownloadError, match="cut short"):
        await _get(dest, size=len(DATA) + 1)
    assert not dest.exists()


async def test_long_download_is_stopped(tmp_path: Path) -> None:
    dest = tmp_path / "p.mpack"
    with pytest.raises(DownloadError, match="larger"):
        await _get(dest, size=len(DATA) - 1)
    assert not dest.exists()


async def test_http_error_and_redirect_are_rejected(tmp_path: Path) -> None:
    for response in (
        httpx.Response(403, text="expired"),
        httpx.Response(302, headers={"location": "http://elsewhere/p"}),
    ):
        async with _client(response) as http:
            with pytest.raises(DownloadError, match="HTTP"):
                await download_verified(
                    http,
                    "http://blobs.test/p",
                    tmp_path / "p",
                    expected_size=1,
                    expected_sha256=SHA,
                )


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
