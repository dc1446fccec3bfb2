"""A real S3 endpoint for tests: moto's threaded server on a free loopback port.

Reuse it from any test package by importing the fixture into that package's conftest.py:

    from tests.storage.s3_server import moto_s3  # noqa: F401  (pytest finds it by name)

    async def test_x(moto_s3: MotoS3) -> None:
        bucket = moto_s3.create_bucket()
        async with moto_s3.storage(bucket) as storage:
            ...
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from musehub.devstack.moto_s3 import running_moto_s3
from musehub.storage.s3 import S3Storage

REGION = "us-east-1"
ACCESS_KEY_ID = "testing"
SECRET_ACCESS_KEY = "testing"


@dataclass(frozen=True)
class MotoS3:
    endpoint_url: str

    def client(self) -> Any:
        """A plain (blocking) boto3 client, for setting up and inspecting buckets."""
        return self._client

    @functools.cached_property
    def _client(self) -> Any:
        # One per server: making a boto3 client costs about 0.1 s of CPU (thread-safe to share).
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


@contextmanager
def running_moto_server() -> Iterator[MotoS3]:
    """moto's server, storing the bytes of form-typed PUTs as S3 does (see `moto_s3`)."""
    with running_moto_s3() as endpoint_url:
        yield MotoS3(endpoint_url=endpoint_url)


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    with running_moto_server() as endpoint:
        yield endpoint
