"""S3-only behaviour: one shared client, bounded multipart, abort on failure, error mapping."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from musehub.storage import S3Storage, StorageError
from musehub.storage.s3 import PART_SIZE, PARTS_IN_FLIGHT
from tests.storage.s3_server import MotoS3


async def test_one_client_is_created_and_reused(s3_storage: S3Storage) -> None:
    await s3_storage.start()
    client = s3_storage._client

    await asyncio.gather(*(s3_storage.put(f"k/{i}", b"x") for i in range(10)))
    await s3_storage.get("k/1")

    assert client is not None
    assert s3_storage._client is client


async def test_closed_storage_refuses_calls(moto_s3: MotoS3) -> None:
    storage = moto_s3.storage(moto_s3.create_bucket())
    await storage.put("k", b"x")
    await storage.aclose()

    with pytest.raises(StorageError, match="closed"):
        await storage.get("k")


async def test_multipart_keeps_at_most_four_parts_in_flight(
    s3_storage: S3Storage, tmp_path: Path, moto_s3: MotoS3
) -> None:
    source = tmp_path / "six-parts.bin"
    source.write_bytes(os.urandom(5 * PART_SIZE + 123))
    await s3_storage.start()
    client = s3_storage._client
    real_upload_part = client.upload_part
    active = peak = calls = 0

    async def slow_upload_part(**kwargs: Any) -> Any:
        nonlocal active, peak, calls
        active += 1
        calls += 1
        peak = max(peak, active)
        await asyncio.sleep(0.05)  # long enough that the parts overlap
        try:
            return await real_upload_part(**kwargs)
        finally:
            active -= 1

    client.upload_part = slow_upload_part
    try:
        await s3_storage.put_file("big", source)
    finally:
        del client.upload_part

    assert calls == 6
    assert peak == PARTS_IN_FLIGHT
    assert await s3_storage.get("big") == source.read_bytes()


async def test_failed_part_aborts_the_upload(
    s3_storage: S3Storage, tmp_path: Path, moto_s3: MotoS3
) -> None:
    source = tmp_path / "three-parts.bin"
    source.write_bytes(os.urandom(2 * PART_SIZE + 1))
    await s3_storage.start()
    client = s3_storage._client
    real_upload_part = client.upload_part

    async def failing_upload_part(**kwargs: Any) -> Any:
        if kwargs["PartNumber"] == 2:
            error = {"Error": {"Code": "InternalError", "Message": "injected part failure"}}
            raise ClientError(error, "UploadPart")  # type: ignore[arg-type]
        return await real_upload_part(**kwargs)

    client.upload_part = failing_upload_part
    try:
        with pytest.raises(StorageError, match="S3 request for 'big' failed"):
            await s3_storage.put_file("big", source)
    finally:
        del client.upload_part

    assert not await s3_storage.exists("big")
    uploads = moto_s3.client().list_multipart_uploads(Bucket=s3_storage.bucket)
    assert uploads.get("Uploads", []) == []


async def test_missing_bucket_says_so(moto_s3: MotoS3) -> None:
    async with moto_s3.storage("no-such-bucket-here") as storage:
        with pytest.raises(StorageError, match="does not exist"):
            await storage.put("k", b"x")


async def test_presigned_put_needs_no_headers(s3_storage: S3Storage) -> None:
    url = await s3_storage.presign_put("k", ttl_seconds=60)

    assert "X-Amz-SignedHeaders=host" in url
    assert "checksum" not in url.lower()
