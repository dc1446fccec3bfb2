"""Streamed download of a pack URL, checked against the size and sha256 the remote promised."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx

from musehub.client.errors import DownloadError
from musehub.client.progress import ByteProgress

DOWNLOAD_TIMEOUT_S = 60.0


async def download_verified(
    http: httpx.AsyncClient,
    url: str,
    dest: Path,
    *,
    expected_size: int,
    expected_sha256: str,
    progress: ByteProgress | None = None,
) -> int:
    """GET ``url`` into ``dest`` (no auth, no redirects); raise ``DownloadError`` on mismatch.

    Stops early once more bytes arrive than promised. Returns the byte count. On any failure
    ``dest`` is removed so a bad pack is never read.
    """
    digest = hashlib.sha256()
    received = 0
    try:
        async with http.stream(
            "GET", url, follow_redirects=False, timeout=DOWNLOAD_TIMEOUT_S
        ) as resp:
            if resp.status_code != 200:
                raise DownloadError(
                    f"pack download failed with HTTP {resp.status_code}; the pack URL may have "
                    "expired, run the clone again"
                )
            with dest.open("wb") as fh:
                async for chunk in resp.aiter_bytes():
                    received += len(chunk)
                    if received > expected_size:
                        raise DownloadError(
                            f"pack download is larger than the {expected_size} bytes promised; "
                            "the remote sent a different pack, run the clone again"
                        )
                    digest.update(chunk)
                    fh.write(chunk)
                    if progress is not None:
                        progress.advance(len(chunk))
        check_download(received, digest.hexdigest(), expected_size, expected_sha256)
    except httpx.HTTPError as exc:
        _discard(dest)
        raise DownloadError(
            f"pack download from {url} broke off: {exc}; run the clone again"
        ) from exc
    except BaseException:
        _discard(dest)
        raise
    return received


def _discard(path: Path) -> None:
    """Remove a partial or bad download so nothing reads it (a fast local unlink)."""
    path.unlink(missing_ok=True)


def check_download(size: int, sha256: str, expected_size: int, expected_sha256: str) -> None:
    """Raise ``DownloadError`` unless the bytes received are the bytes promised."""
    if size != expected_size:
        raise DownloadError(
            f"pack download is {size} bytes, the remote promised {expected_size}; "
            "the transfer was cut short, run the clone again"
        )
    if sha256 != expected_sha256.lower():
        raise DownloadError(
            f"pack sha256 is {sha256}, the remote promised {expected_sha256}; "
            "the pack is corrupt, run the clone again or report it to the hub's operator"
        )
