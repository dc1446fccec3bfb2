"""An S3 endpoint for benchmarks: moto's server as a child process on a free loopback port.

A child process, not moto's threaded server inside the benchmark: the measuring client must not
share its interpreter (and GIL) with the store it measures. Reads can be slowed down by the hub's
own `MUSEHUB_STORAGE_READ_DELAY_MS`, which is how the scenarios stand in for R2's latency."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import boto3
import httpx
from pydantic import SecretStr

from musehub.devstack.ports import free_port
from musehub.settings import StorageSettings

REGION = "us-east-1"
KEY_ID = SECRET = "bench"
READY_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class BenchS3:
    endpoint_url: str
    bucket: str

    def settings(self, *, read_delay_ms: int = 0) -> StorageSettings:
        return StorageSettings(
            backend="s3",
            s3_endpoint_url=self.endpoint_url,
            s3_bucket=self.bucket,
            s3_region=REGION,
            s3_access_key_id=KEY_ID,
            s3_secret_access_key=SecretStr(SECRET),
            read_delay_ms=read_delay_ms,
        )

    def env(self, *, read_delay_ms: int = 0) -> dict[str, str]:
        """The same settings as environment variables, for `musehub dev`."""
        return {
            "MUSEHUB_STORAGE_BACKEND": "s3",
            "MUSEHUB_STORAGE_S3_ENDPOINT_URL": self.endpoint_url,
            "MUSEHUB_STORAGE_S3_BUCKET": self.bucket,
            "MUSEHUB_STORAGE_S3_REGION": REGION,
            "MUSEHUB_STORAGE_S3_ACCESS_KEY_ID": KEY_ID,
            "MUSEHUB_STORAGE_S3_SECRET_ACCESS_KEY": SECRET,
            "MUSEHUB_STORAGE_READ_DELAY_MS": str(read_delay_ms),
        }


@contextmanager
def moto_s3() -> Iterator[BenchS3]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "musehub.devstack.moto_s3", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(endpoint, process)
        bucket = f"bench-{uuid.uuid4().hex[:12]}"
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id=KEY_ID,
            aws_secret_access_key=SECRET,
        ).create_bucket(Bucket=bucket)
        yield BenchS3(endpoint, bucket)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_up(endpoint: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto's server exited with {process.returncode}")
        try:
            httpx.get(endpoint, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"moto's server did not answer within {READY_TIMEOUT_S:.0f} s")
