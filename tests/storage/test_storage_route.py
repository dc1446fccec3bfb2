"""The /_storage/{key} route in-process: Range, HEAD, signatures, errors and upload limits."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from api.deps import get_storage
from api.routes.storage import RangeNotSatisfiable, parse_range, storage_router
from musehub.storage import LatencyInjectingStorage, LocalStorage

DATA = os.urandom(1000)
MAX_PUT = 64 * 1024
BASE = "http://hub.test"


@pytest.fixture
async def local(tmp_path: Path) -> LocalStorage:
    storage = LocalStorage(tmp_path / "blobs", signing_key=b"r" * 32, public_base_url=BASE)
    await storage.put("objs/data", DATA)
    return storage


@pytest.fixture
def app(local: LocalStorage) -> FastAPI:
    app = FastAPI()
    app.include_router(storage_router(max_put_bytes=MAX_PUT))
    app.dependency_overrides[get_storage] = lambda: local
    return app


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        yield client


async def get_url(local: LocalStorage, key: str = "objs/data") -> str:
    return await local.presign_get(key, ttl_seconds=60)


def assert_one_line(response: httpx.Response) -> None:
    assert response.headers["content-type"].startswith("text/plain")
    assert len(response.text) < 400
    assert response.text.count("\n") <= 1


# -- GET and HEAD -----------------------------------------------------------------------------


async def test_get_whole_object(client: httpx.AsyncClient, local: LocalStorage) -> None:
    response = await client.get(await get_url(local))

    assert response.status_code == 200
    assert response.content == DATA
    assert response.headers["content-length"] == "1000"
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["accept-ranges"] == "bytes"
    assert "content-range" not in response.headers


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=10-19", 10, 20),
        ("bytes=990-", 990, 1000),
        ("bytes=-5", 995, 1000),
        ("bytes=-5000", 0, 1000),
        ("bytes=500-99999", 500, 1000),
        ("bytes=0-0", 0, 1),
    ],
)
async def test_range_gives_206(
    client: httpx.AsyncClient, local: LocalStorage, header: str, start: int, end: int
) -> None:
    response = await client.get(await get_url(local), headers={"Range": header})

    assert response.status_code == 206
    assert response.content == DATA[start:end]
    assert response.headers["content-range"] == f"bytes {start}-{end - 1}/1000"
    assert response.headers["content-length"] == str(end - start)


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=5000-6000", "bytes=-0"])
async def test_unsatisfiable_range_gives_416(
    client: httpx.AsyncClient, local: LocalStorage, header: str
) -> None:
    response = await client.get(await get_url(local), headers={"Range": header})

    assert response.status_code == 416
    assert response.headers["content-range"] == "bytes */1000"
    assert_one_line(response)


@pytest.mark.parametrize("header", ["bytes=0-1,5-6", "items=0-5", "bytes=9-3", "bytes=-"])
async def test_unusable_range_is_ignored(
    client: httpx.AsyncClient, local: LocalStorage, header: str
) -> None:
    response = await client.get(await get_url(local), headers={"Range": header})

    assert response.status_code == 200
    assert response.content == DATA


async def test_head_gives_headers_only(client: httpx.AsyncClient, local: LocalStorage) -> None:
    url = await get_url(local)

    whole = await client.head(url)
    part = await client.head(url, headers={"Range": "bytes=100-199"})

    assert whole.status_code == 200
    assert whole.headers["content-length"] == "1000"
    assert whole.content == b""
    assert part.status_code == 206
    assert part.headers["content-range"] == "bytes 100-199/1000"


async def test_empty_object(client: httpx.AsyncClient, local: LocalStorage) -> None:
    await local.put("objs/empty", b"")
    url = await get_url(local, "objs/empty")

    response = await client.get(url)
    ranged = await client.get(url, headers={"Range": "bytes=0-"})

    assert response.status_code == 200
    assert response.content == b""
    assert ranged.status_code == 416


# -- refusals ---------------------------------------------------------------------------------


async def test_tampered_signature_is_403(client: httpx.AsyncClient, local: LocalStorage) -> None:
    url = await get_url(local)
    flipped = url[:-1] + ("0" if url[-1] != "0" else "1")

    response = await client.get(flipped)

    assert response.status_code == 403
    assert "invalid" in response.text
    assert_one_line(response)


async def test_extended_expiry_is_403_invalid(
    client: httpx.AsyncClient, local: LocalStorage
) -> None:
    url = await get_url(local)
    expires = url.split("expires=")[1].split("&")[0]

    response = await client.get(url.replace(f"expires={expires}", f"expires={int(expires) + 3600}"))

    assert response.status_code == 403
    assert "invalid" in response.text


async def test_url_for_another_key_is_403(client: httpx.AsyncClient, local: LocalStorage) -> None:
    await local.put("objs/other", b"secret")
    url = await get_url(local)

    response = await client.get(url.replace("objs/data", "objs/other"))

    assert response.status_code == 403
    assert b"secret" not in response.content


async def test_expired_link_is_403_with_advice(
    client: httpx.AsyncClient, local: LocalStorage
) -> None:
    url = local.signer.url("GET", "objs/data", int(time.time()) - 5)

    response = await client.get(url)

    assert response.status_code == 403
    assert response.text.strip() == "this link has expired; ask the server for a new one"


@pytest.mark.parametrize("query", ["", "?method=GET", "?method=GET&expires=1&signature="])
async def test_unsigned_link_is_403(client: httpx.AsyncClient, query: str) -> None:
    response = await client.get(f"/_storage/objs/data{query}")

    assert response.status_code == 403
    assert "invalid" in response.text


async def test_get_link_cannot_put(client: httpx.AsyncClient, local: LocalStorage) -> None:
    response = await client.put(await get_url(local), content=b"overwrite")

    assert response.status_code == 403
    assert await local.get("objs/data") == DATA


async def test_missing_object_is_404(client: httpx.AsyncClient, local: LocalStorage) -> None:
    response = await client.get(await get_url(local, "objs/nothing"))

    assert response.status_code == 404
    assert_one_line(response)


@pytest.mark.parametrize("path", ["/_storage/-bad", "/_storage/a%2F%2Fb", "/_storage/a/%2E%2E/b"])
async def test_bad_key_is_400(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(f"{path}?method=GET&expires=9999999999&signature=00")

    assert response.status_code == 400
    assert "storage key" in response.text


async def test_non_local_backend_is_404(app: FastAPI, local: LocalStorage) -> None:
    app.dependency_overrides[get_storage] = lambda: LatencyInjectingStorage(local, 0)
    url = await get_url(local)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
        response = await client.get(url)

    assert response.status_code == 404
    assert "does not serve storage links" in response.text


# -- PUT --------------------------------------------------------------------------------------


async def test_put_stores_atomically_and_cleans_up(
    client: httpx.AsyncClient, local: LocalStorage
) -> None:
    body = os.urandom(MAX_PUT)
    url = await local.presign_put("objs/up", ttl_seconds=60)

    response = await client.put(url, content=body)

    assert response.status_code == 200
    assert await local.get("objs/up") == body
    assert list(local.temp_dir.iterdir()) == []


async def test_put_over_the_limit_is_413(client: httpx.AsyncClient, local: LocalStorage) -> None:
    url = await local.presign_put("objs/huge", ttl_seconds=60)

    async def chunked_body() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield b"x" * (MAX_PUT // 2)

    declared = await client.put(url, content=b"x" * (MAX_PUT + 1))
    streamed = await client.put(url, content=chunked_body())

    assert declared.status_code == 413
    assert streamed.status_code == 413
    assert "limit" in streamed.text
    assert not await local.exists("objs/huge")
    assert list(local.temp_dir.iterdir()) == []


async def test_expired_put_link_is_403(client: httpx.AsyncClient, local: LocalStorage) -> None:
    url = local.signer.url("PUT", "objs/late", int(time.time()) - 1)

    response = await client.put(url, content=b"late")

    assert response.status_code == 403
    assert "expired" in response.text
    assert not await local.exists("objs/late")


async def test_put_onto_a_folder_of_objects_is_409(
    client: httpx.AsyncClient, local: LocalStorage
) -> None:
    url = await local.presign_put("objs", ttl_seconds=60)

    response = await client.put(url, content=b"x")

    assert response.status_code == 409
    assert "both an object and a folder" in response.text
    assert await local.get("objs/data") == DATA


# -- parse_range ------------------------------------------------------------------------------


def test_parse_range_table() -> None:
    assert parse_range(None, 10) is None
    assert parse_range("bytes=2-4", 10) == (2, 5)
    assert parse_range("bytes=2-", 10) == (2, 10)
    assert parse_range("bytes=-3", 10) == (7, 10)
    assert parse_range("bytes=8-100", 10) == (8, 10)
    assert parse_range("bytes=5-2", 10) is None
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=10-", 10)
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=-1", 0)
