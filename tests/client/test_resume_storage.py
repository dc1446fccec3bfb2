"""Resumable and ranged pack downloads against both real storage backends, over TCP.

The local backend's signed URLs are served by the API's storage route under uvicorn, the S3
backend's by moto's server. The client reaches either through ``bench.proxy``, which counts
the bytes the server sent and can drop the connection half-way, as a failing link would.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI

from api.deps import get_storage
from api.routes.storage import storage_router
from bench.proxy import ThrottlingProxy, running_proxy
from musehub.client.download import PackPart, RetryPolicy, stream_part
from musehub.storage import LocalStorage, ObjectStorage
from tests.storage.http_server import serving
from tests.storage.s3_server import MotoS3, moto_s3

__all__ = ["moto_s3"]  # the session fixture, used here through `storage`

DATA = os.urandom(3 * 1024 * 1024 + 12_345)
SHA = hashlib.sha256(DATA).hexdigest()
KEY = f"mpacks/resume-test/{SHA}.mpack"
FAST = RetryPolicy(attempts=4, first_backoff_s=0.01, max_backoff_s=0.05)
HEADERS_ALLOWANCE = 4096  # response headers of a few requests


@pytest.fixture(scope="module")
def storage_app() -> FastAPI:
    app = FastAPI()
    app.include_router(storage_router())
    return app


@pytest.fixture(scope="module")
def storage_base_url(storage_app: FastAPI) -> Iterator[str]:
    with serving(storage_app) as base_url:
        yield base_url


async def _local(tmp_path: Path, app: FastAPI, base_url: str) -> LocalStorage:
    local = LocalStorage(tmp_path / "blobs", signing_key=b"k" * 32, public_base_url=base_url)
    app.dependency_overrides[get_storage] = lambda: local
    await local.put(KEY, DATA)
    return local


@pytest.fixture
async def local_storage(
    tmp_path: Path, storage_app: FastAPI, storage_base_url: str
) -> LocalStorage:
    return await _local(tmp_path, storage_app, storage_base_url)


@pytest.fixture(params=["local", "s3"])
async def storage(
    request: pytest.FixtureRequest, tmp_path: Path, moto_s3: MotoS3
) -> AsyncIterator[ObjectStorage]:
    if request.param == "local":
        app: FastAPI = request.getfixturevalue("storage_app")
        base: str = request.getfixturevalue("storage_base_url")
        yield await _local(tmp_path, app, base)
        return
    async with moto_s3.storage(moto_s3.create_bucket()) as s3:
        await s3.put(KEY, DATA)
        yield s3


class _ThroughProxy(httpx.AsyncBaseTransport):
    """Sends every request to the proxy's port, keeping the URL's Host header (S3 signs it)."""

    def __init__(self, proxy: ThrottlingProxy) -> None:
        self._proxy = proxy
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(host=self._proxy.host, port=self._proxy.port)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


async def _download(proxy: ThrottlingProxy, part: PackPart, **kw: object) -> tuple[bytes, int]:
    out = bytearray()

    async def write(data: bytes) -> None:
        out.extend(data)

    async with httpx.AsyncClient(transport=_ThroughProxy(proxy)) as http:
        received = await stream_part(http, part, write, policy=FAST, **kw)  # type: ignore[arg-type]
    return bytes(out), received


def _origin(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


async def test_a_download_killed_at_half_resumes_without_the_first_half(
    storage: ObjectStorage,
) -> None:
    url = await storage.presign_get(KEY, 900)
    with running_proxy(*_origin(url), cut_down_after=len(DATA) // 2) as proxy:
        got, received = await _download(proxy, PackPart(url, len(DATA), SHA))
    assert got == DATA
    assert proxy.cuts == 1 and proxy.stats.connections == 2  # cut once, resumed once
    # Bytes the server sent, headers included: the first half crossed the link once.
    assert len(DATA) <= proxy.stats.down <= len(DATA) + HEADERS_ALLOWANCE
    assert received == len(DATA)


async def test_a_big_pack_in_parallel_ranges_with_a_break(storage: ObjectStorage) -> None:
    url = await storage.presign_get(KEY, 900)
    with running_proxy(*_origin(url), cut_down_after=len(DATA) // 3) as proxy:
        got, _ = await _download(
            proxy,
            PackPart(url, len(DATA), SHA),
            parallel=3,
            parallel_min_bytes=1024 * 1024,
            chunk_bytes=512 * 1024,
        )
    assert got == DATA
    assert proxy.cuts == 1
    assert proxy.stats.down <= len(DATA) + 512 * 1024 + 20 * HEADERS_ALLOWANCE


async def test_a_url_past_its_expiry_is_replaced_before_use(storage: ObjectStorage) -> None:
    fresh = await storage.presign_get(KEY, 900)
    stale = fresh.replace(KEY, KEY.replace("resume-test", "gone"))  # would be a 4xx

    async def refresh() -> PackPart:
        return PackPart(fresh, len(DATA), SHA, time.time() + 900)

    with running_proxy(*_origin(fresh)) as proxy:
        part = PackPart(stale, len(DATA), SHA, expires_at=time.time() - 1)
        got, _ = await _download(proxy, part, refresh=refresh)
    assert got == DATA and proxy.stats.connections == 1


async def test_a_403_from_the_local_backend_gets_a_fresh_url(tmp_path: Path) -> None:
    app = FastAPI()
    app.include_router(storage_router())
    local = LocalStorage(tmp_path / "b", signing_key=b"k" * 32, public_base_url="http://x")
    app.dependency_overrides[get_storage] = lambda: local
    with serving(app) as base:
        local = LocalStorage(tmp_path / "b", signing_key=b"k" * 32, public_base_url=base)
        await local.put(KEY, DATA)
        good = await local.presign_get(KEY, 900)
        expired = good.split("expires=")[0] + "expires=1&signature=" + "0" * 64
        refreshed = []

        async def refresh() -> PackPart:
            refreshed.append(1)
            return PackPart(good, len(DATA), SHA, time.time() + 900)

        with running_proxy(*_origin(good)) as proxy:
            got, _ = await _download(proxy, PackPart(expired, len(DATA), SHA), refresh=refresh)
    assert got == DATA and refreshed == [1]


async def test_downloads_one_after_another_share_one_connection(
    local_storage: LocalStorage,
) -> None:
    """A part read to its end leaves its connection to the next: a chain of 26 parts through
    a 20 ms link paid a TCP connect each when the response was dropped at its last byte. On
    the local backend only: moto's test server closes the connection after every answer."""
    url = await local_storage.presign_get(KEY, 900)
    got = bytearray()

    async def write(data: bytes) -> None:
        got.extend(data)

    with running_proxy(*_origin(url)) as proxy:
        async with httpx.AsyncClient(transport=_ThroughProxy(proxy)) as http:
            for _ in range(3):
                await stream_part(http, PackPart(url, len(DATA), SHA), write, policy=FAST)
    assert bytes(got) == DATA * 3
    assert proxy.stats.connections == 1
