"""Hostile presigned links and Range headers, over real HTTP (uvicorn): a 403 or a 416 with one
readable line, never a 500. Issue 12, item 6."""

from __future__ import annotations

import os

import httpx
import pytest
from fastapi import FastAPI

from api.deps import get_storage
from api.routes.storage import parse_range, storage_router
from musehub.storage import LocalStorage

DATA = os.urandom(1000)
HUGE = "9" * 5000  # int() refuses more than 4,300 digits


async def _url(local: LocalStorage, key: str = "objs/data") -> str:
    await local.put(key, DATA if key == "objs/data" else b"")
    return await local.presign_get(key, ttl_seconds=60)


def _with_expires(url: str, expires: str) -> str:
    """The URL with its expiry replaced (the signature then no longer matches)."""
    old = url.split("expires=")[1].split("&")[0]
    return url.replace(f"expires={old}", f"expires={expires}")


def _one_line(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text.count("\n") <= 1 and len(response.text) < 400
    return response.text


@pytest.mark.parametrize(
    "expires",
    [
        HUGE,
        "²",  # str.isdigit() says yes, int() says no
        "%C2%B2",  # the same, percent-encoded as a client sends it
        "%D9%A1%D9%A2",  # Arabic-Indic digits: int() reads them as 12
        "1" + "0" * 30,
        "-5",
        "+5",
        " 5",
        "5_000",
    ],
)
@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT"])
async def test_malformed_expiry_is_403(
    local_storage: LocalStorage, expires: str, method: str
) -> None:
    url = _with_expires(await _url(local_storage), expires)
    if method == "PUT":
        url = url.replace("method=GET", "method=PUT")
    async with httpx.AsyncClient() as client:
        response = await client.request(method, url, content=b"x" if method == "PUT" else None)
    assert response.status_code == 403, response.text
    if method != "HEAD":
        assert "invalid" in _one_line(response)


@pytest.mark.parametrize(
    ("header", "status", "start", "end"),
    [
        (f"bytes={HUGE}-", 416, 0, 0),  # starts past the end
        (f"bytes={HUGE}-{HUGE}", 416, 0, 0),
        ("bytes=00000000000000000000000000000000000001-", 206, 1, 1000),  # leading zeros
        (f"bytes=0-{HUGE}", 206, 0, 1000),  # an end past the end is clipped
        (f"bytes=-{HUGE}", 206, 0, 1000),  # a suffix longer than the object is all of it
        ("bytes=1000-", 416, 0, 0),
        ("bytes=1000-1000", 416, 0, 0),
        ("bytes=999-5000", 206, 999, 1000),
        ("bytes=" + "1" * 19 + "-", 416, 0, 0),  # past 2**63: no seek to it
    ],
)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_range_with_huge_or_past_the_end_positions(
    local_storage: LocalStorage, header: str, status: int, start: int, end: int, method: str
) -> None:
    url = await _url(local_storage)
    async with httpx.AsyncClient() as client:
        response = await client.request(method, url, headers={"Range": header})
    assert response.status_code == status, response.text[:200]
    if status == 416:
        assert response.headers["content-range"] == "bytes */1000"
        if method == "GET":
            assert "outside" in _one_line(response)
    else:
        assert response.headers["content-range"] == f"bytes {start}-{end - 1}/1000"
        if method == "GET":
            assert response.content == DATA[start:end]


@pytest.mark.parametrize(
    "header",
    ["bytes=\u0661-\u0662", "bytes=²-", "bytes=0x10-", "bytes=1e3-", "bytes= 1-2", "bytes=1 -2"],
)
async def test_range_that_is_not_ascii_digits_is_ignored(
    local_storage: LocalStorage, header: str
) -> None:
    """RFC 9110: a Range the server cannot parse is ignored; the whole object is the answer."""
    url = await _url(local_storage)
    async with httpx.AsyncClient() as client:
        response = await client.get(url, headers={b"Range": header.encode()})
    assert response.status_code == 200
    assert response.content == DATA


async def test_huge_content_length_on_put_is_a_4xx(local_storage: LocalStorage) -> None:
    """HTTP servers refuse such a header themselves; an ASGI server that passes it on must not
    turn it into a 500. So this request goes to the app in-process."""
    app = FastAPI()
    app.include_router(storage_router())
    app.dependency_overrides[get_storage] = lambda: local_storage
    url = await local_storage.presign_put("objs/upload", ttl_seconds=60)
    transport = httpx.ASGITransport(app=app)
    for declared in (HUGE, "²", "\uff11\uff12"):
        async with httpx.AsyncClient(transport=transport) as client:
            request = client.build_request("PUT", url, content=b"x")
            request.headers["Content-Length"] = declared
            response = await client.send(request)
        assert 400 <= response.status_code < 500, response.text
    assert not await local_storage.exists("objs/upload")


def test_parse_range_never_converts_a_huge_number() -> None:
    assert parse_range(f"bytes=0-{HUGE}", 10) == (0, 10)
    assert parse_range(f"bytes=-{HUGE}", 10) == (0, 10)
    assert parse_range("bytes=\u0661-\u0662", 10) is None
