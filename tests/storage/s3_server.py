"""A real S3 endpoint for tests: moto's threaded server on a free loopback port.

Reuse it from any test package by importing the fixture into that package's conftest.py:

    from tests.storage.s3_server import moto_s3  # noqa: F401  (pytest finds it by name)

    async def test_x(moto_s3: MotoS3) -> None:
        bucket = moto_s3.create_bucket()
        async with moto_s3.storage(bucket) as storage:
            ...
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.server import ThreadedMotoServer
from werkzeug.serving import make_server

from musehub.storage.s3 import S3Storage

REGION = "us-east-1"
ACCESS_KEY_ID = "testing"
SECRET_ACCESS_KEY = "testing"


@dataclass(frozen=True)
class MotoS3:
    endpoint_url: str

    def client(self) -> Any:
        """A plain (blocking) boto3 client, for setting up and inspecting buckets."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
        )

    def create_bucket(self, name: str | None = None) -> str:
        """Create a bucket (a fresh uniquely named one by default) and return its name."""
        bucket = name or f"test-{uuid.uuid4().hex[:20]}"
        self.client().create_bucket(Bucket=bucket)
        return bucket

    def storage(self, bucket: str) -> S3Storage:
        """An S3Storage on `bucket`; close it with `aclose()` or `async with`."""
        return S3Storage(
            bucket,
            endpoint_url=self.endpoint_url,
            region=REGION,
            access_key_id=ACCESS_KEY_ID,
            secret_access_key=SECRET_ACCESS_KEY,
        )


class _RawPutBodies:
    """S3 and R2 store a PUT's body as it came, whatever its Content-Type; moto's werkzeug reads
    an `application/x-www-form-urlencoded` body as a form and stores something else (or hangs).
    The muse client sends exactly that type (urllib's default) with its presigned uploads."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("REQUEST_METHOD") == "PUT" and environ.get("CONTENT_TYPE", "").startswith(
            "application/x-www-form-urlencoded"
        ):
            environ["CONTENT_TYPE"] = "application/octet-stream"
        return self.app(environ, start_response)


class _MotoServer(ThreadedMotoServer):
    def _server_entry(self) -> None:
        self._server = make_server(
            self._ip_address,
            self._port,
            _RawPutBodies(DomainDispatcherApplication(create_backend_app)),
            True,
            request_handler=MotoRequestHandler,
        )
        self._server_ready_event.set()
        self._server.serve_forever()


@contextmanager
def running_moto_server() -> Iterator[MotoS3]:
    # One line per request at INFO would bury a failing test's own log.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = _MotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield MotoS3(endpoint_url=f"http://{host}:{port}")
    finally:
        server.stop()


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    with running_moto_server() as endpoint:
        yield endpoint
