"""S3 URLs signed by the hub are the ones botocore makes, byte for byte, at a fraction of the
cost (musehub/storage/s3_presign.py): path style (R2, MinIO, moto) and virtual-host style
(AWS), GET and PUT, with and without a session token."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aioboto3
import botocore.auth
import httpx
import pytest

from musehub.storage import S3Storage, StorageError
from tests.storage.s3_server import MotoS3

MOMENT = datetime(2026, 11, 29, 23, 59, 58, tzinfo=UTC)
KEYS = ["mpacks/0f3a/" + "ab" * 32 + ".mpack", "uploads/r-1/x_y.z~", "k"]


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore signs at MOMENT too."""
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: MOMENT.replace(tzinfo=None))


async def botocore_url(storage: S3Storage, operation: str, key: str, ttl: int) -> str:
    client = await storage._get_client()
    url: str = await client.generate_presigned_url(
        operation, Params={"Bucket": storage.bucket, "Key": key}, ExpiresIn=ttl
    )
    return url


async def hub_url(storage: S3Storage, operation: str, key: str, ttl: int) -> str:
    await storage.presign_get("k", 60)  # sets the presigner up
    assert storage._presigner is not None
    return await storage._presigner.presign(operation, key, ttl, now=MOMENT)


@pytest.mark.parametrize("operation", ["get_object", "put_object"])
@pytest.mark.parametrize(
    "endpoint_url, region",
    [
        ("http://127.0.0.1:9000", "auto"),
        ("https://acct.r2.cloudflarestorage.com", "auto"),
        (None, "eu-west-1"),
        (None, "us-east-1"),
    ],
)
async def test_urls_are_botocores_byte_for_byte(
    frozen_clock: None, operation: str, endpoint_url: str | None, region: str
) -> None:
    async with S3Storage(
        "bucket-1",
        endpoint_url=endpoint_url,
        region=region,
        access_key_id="AKIDEXAMPLE",
        secret_access_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    ) as storage:
        for key in KEYS:
            for ttl in (10, 900, 7 * 24 * 3600):
                expected = await botocore_url(storage, operation, key, ttl)
                assert await hub_url(storage, operation, key, ttl) == expected


async def test_a_session_token_is_signed_into_the_url(frozen_clock: None) -> None:
    storage = S3Storage("bucket-1", endpoint_url="http://127.0.0.1:9000", region="auto")
    storage._session = aioboto3.Session(
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        aws_session_token="token/with+odd=chars",
        region_name="auto",
    )
    async with storage:
        expected = await botocore_url(storage, "get_object", KEYS[0], 900)
        url = await hub_url(storage, "get_object", KEYS[0], 900)
    assert urlsplit(url)._replace(query="") == urlsplit(expected)._replace(query="")
    query: dict[str, Any] = parse_qs(urlsplit(url).query)
    assert query == parse_qs(urlsplit(expected).query)
    assert query["X-Amz-Security-Token"] == ["token/with+odd=chars"]


async def test_signed_urls_work_against_a_real_endpoint(s3_storage: S3Storage) -> None:
    put = await s3_storage.presign_put("uploads/r/obj", 60)
    async with httpx.AsyncClient() as http:
        assert (await http.put(put, content=b"signed by the hub")).status_code == 200
        got = await http.get(await s3_storage.presign_get("uploads/r/obj", 60))
    assert (got.status_code, got.content) == (200, b"signed by the hub")


async def test_no_credentials_is_a_clear_storage_error(
    moto_s3: MotoS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    async with S3Storage("bucket-1", endpoint_url=moto_s3.endpoint_url) as storage:
        with pytest.raises(StorageError, match="no S3 credentials found"):
            await storage.presign_get("k", 60)
