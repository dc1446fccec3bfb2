"""Fixtures for the storage tests: both backends behind one `storage` fixture.

The local backend's presigned URLs are served by the storage router running under uvicorn on
a loopback port; the S3 backend talks to a real S3 endpoint (moto's server) on another.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI

from api.deps import get_storage
from api.routes.storage import storage_router
from musehub.storage import LocalStorage, ObjectStorage, S3Storage
from tests.storage.http_server import serving
from tests.storage.s3_server import MotoS3

SIGNING_KEY = b"storage-tests-signing-key-32-byt"


@pytest.fixture(scope="session")
def storage_app() -> FastAPI:
    """The app uvicorn serves; each local test points its storage dependency at its own root."""
    app = FastAPI()
    app.include_router(storage_router())
    return app


@pytest.fixture(scope="session")
def storage_base_url(storage_app: FastAPI) -> Iterator[str]:
    with serving(storage_app) as base_url:
        yield base_url


@pytest.fixture
def local_storage(tmp_path: Path, storage_app: FastAPI, storage_base_url: str) -> LocalStorage:
    storage = LocalStorage(
        tmp_path / "blobs", signing_key=SIGNING_KEY, public_base_url=storage_base_url
    )
    storage_app.dependency_overrides[get_storage] = lambda: storage
    return storage


@pytest.fixture
async def s3_storage(moto_s3: MotoS3) -> AsyncIterator[S3Storage]:
    async with moto_s3.storage(moto_s3.create_bucket()) as storage:
        yield storage


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest) -> ObjectStorage:
    backend: ObjectStorage = request.getfixturevalue(f"{request.param}_storage")
    return backend
