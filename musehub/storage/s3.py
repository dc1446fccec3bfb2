"""Objects in an S3 bucket (AWS, Cloudflare R2, MinIO) through one shared aioboto3 client."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from datetime import UTC
from pathlib import Path
from typing import Any, BinaryIO

import aioboto3
from aiobotocore.config import AioConfig
from botocore.exceptions import BotoCoreError, ClientError

from musehub.storage.base import (
    ObjectNotFound,
    ObjectStorage,
    StorageError,
    StoredObjectInfo,
    UnfinishedUpload,
    check_range,
    validate_key,
    validate_prefix,
)
from musehub.storage.s3_presign import BucketUrl, S3Presigner

PART_SIZE = 8 << 20
PARTS_IN_FLIGHT = 4
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404"})


@functools.cache
def _session(
    access_key_id: str | None, secret_access_key: str | None, region_name: str | None
) -> aioboto3.Session:
    """One session per process and set of credentials: a new one registers botocore's
    handlers and parses S3's service description again (about 0.25 s of CPU per storage)."""
    return aioboto3.Session(
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        region_name=region_name,
    )


class S3Storage(ObjectStorage):
    """One client, created on first use (or by `start()`), shared by every call."""

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str = "auto",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        max_pool_connections: int = 64,
    ) -> None:
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        # "auto" is R2's region; against AWS itself let botocore find the region as usual.
        region_name = None if endpoint_url is None and region == "auto" else region
        self._session = _session(access_key_id, secret_access_key, region_name)
        self._config = AioConfig(
            signature_version="s3v4",
            # Custom endpoints (R2, MinIO, moto) have no per-bucket DNS names.
            s3={"addressing_style": "path" if endpoint_url else "auto"},
            # Pack builds read many blobs at once; botocore's default pool of 10 would queue them.
            max_pool_connections=max_pool_connections,
            # Default CRC checksums break R2/MinIO multipart and add headers to presigned PUTs.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"mode": "standard", "max_attempts": 5},
        )
        self._client: Any = None
        self._presigner: S3Presigner | None = None
        self._stack = AsyncExitStack()
        self._lock = asyncio.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"S3Storage(bucket={self.bucket!r}, endpoint_url={self.endpoint_url!r})"

    @property
    def _uses_tls(self) -> bool:
        return self.endpoint_url is None or not self.endpoint_url.startswith("http://")

    async def start(self) -> None:
        """Create the client now rather than on the first call."""
        await self._get_client()

    async def aclose(self) -> None:
        async with self._lock:
            self._closed = True
            self._client = None
            await self._stack.aclose()

    # -- writes -----------------------------------------------------------------------------

    async def put(self, key: str, data: bytes) -> None:
        validate_key(key)
        client = await self._get_client()
        with self._errors(key):
            await client.put_object(Bucket=self.bucket, Key=key, Body=data)

    async def put_file(self, key: str, path: Path) -> None:
        validate_key(key)
        client = await self._get_client()
        source = await asyncio.to_thread(path.open, "rb")
        try:
            if await asyncio.to_thread(lambda: os.fstat(source.fileno()).st_size) > PART_SIZE:
                await self._put_multipart(client, key, source)
                return
            data = await asyncio.to_thread(source.read)
            with self._errors(key):
                await client.put_object(Bucket=self.bucket, Key=key, Body=data)
        finally:
            source.close()

    async def delete(self, key: str) -> None:
        validate_key(key)
        client = await self._get_client()
        with self._errors(key):
            await client.delete_object(Bucket=self.bucket, Key=key)

    # -- reads ------------------------------------------------------------------------------

    async def get(self, key: str) -> bytes:
        validate_key(key)
        client = await self._get_client()
        with self._errors(key):
            response = await client.get_object(Bucket=self.bucket, Key=key)
            body = response["Body"]
            try:
                data: bytes = await body.read()
            finally:
                body.close()
        return data

    async def stream(
        self, key: str, *, start: int = 0, end: int | None = None, chunk_size: int = 1 << 20
    ) -> AsyncIterator[bytes]:
        check_range(start, end, chunk_size)
        validate_key(key)
        client = await self._get_client()
        if end is not None and end <= start:
            # An empty range has no Range header; still report a missing object like the rest.
            if await self.size(key) is None:
                raise ObjectNotFound(key)
            return
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if start or end is not None:
            params["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        try:
            with self._errors(key):
                response = await client.get_object(**params)
        except StorageError as exc:
            if _code(exc.__cause__) == "InvalidRange":
                return  # the object exists but is shorter than `start`
            raise
        body = response["Body"]
        try:
            buffer = bytearray()
            with self._errors(key):
                # aiohttp hands back whatever arrived; gather it into chunk_size pieces.
                while piece := await body.read(chunk_size - len(buffer)):
                    buffer += piece
                    if len(buffer) >= chunk_size:
                        yield bytes(buffer)
                        buffer.clear()
            if buffer:
                yield bytes(buffer)
        finally:
            body.close()

    async def size(self, key: str) -> int | None:
        validate_key(key)
        client = await self._get_client()
        try:
            with self._errors(key):
                response = await client.head_object(Bucket=self.bucket, Key=key)
        except ObjectNotFound:
            return None
        return int(response["ContentLength"])

    async def presign_get(self, key: str, ttl_seconds: int) -> str:
        return await self._presign("get_object", key, ttl_seconds)

    async def presign_put(self, key: str, ttl_seconds: int) -> str:
        return await self._presign("put_object", key, ttl_seconds)

    async def list(self, prefix: str = "") -> AsyncIterator[StoredObjectInfo]:
        validate_prefix(prefix)
        client = await self._get_client()
        paginator = client.get_paginator("list_objects_v2")
        with self._errors(prefix):
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", ()):
                    modified = item["LastModified"].astimezone(UTC)
                    yield StoredObjectInfo(item["Key"], int(item["Size"]), modified)

    async def list_unfinished_uploads(self, prefix: str = "") -> AsyncIterator[UnfinishedUpload]:
        validate_prefix(prefix)
        client = await self._get_client()
        paginator = client.get_paginator("list_multipart_uploads")
        with self._errors(prefix):
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Uploads", ()):
                    initiated = item["Initiated"].astimezone(UTC)
                    yield UnfinishedUpload(item["Key"], item["UploadId"], initiated)

    async def abort_unfinished_upload(self, upload: UnfinishedUpload) -> None:
        client = await self._get_client()
        try:
            with self._errors(upload.key):
                await client.abort_multipart_upload(
                    Bucket=self.bucket, Key=upload.key, UploadId=upload.upload_id
                )
        except StorageError as exc:
            if _code(exc.__cause__) != "NoSuchUpload":  # completed or aborted meanwhile
                raise

    # -- helpers ----------------------------------------------------------------------------

    async def _get_client(self) -> Any:
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._closed:
                raise StorageError(f"{self!r} is closed")
            if self._client is None:
                client_cm = self._session.client(
                    "s3",
                    endpoint_url=self.endpoint_url,
                    config=self._config,
                    # Plain http (moto, a MinIO on loopback) has no certificates to load.
                    verify=None if self._uses_tls else False,
                )
                self._client = await self._stack.enter_async_context(client_cm)
        return self._client

    async def _presign(self, operation: str, key: str, ttl_seconds: int) -> str:
        validate_key(key)
        if ttl_seconds <= 0:
            raise ValueError(f"ttl_seconds must be positive, got {ttl_seconds}")
        presigner = self._presigner or await self._new_presigner()
        return await presigner.presign(operation, key, ttl_seconds)

    async def _new_presigner(self) -> S3Presigner:
        """Set up on first use; two callers racing here make the same presigner twice."""
        client = await self._get_client()
        credentials = await self._session.get_credentials()
        if credentials is None:
            raise StorageError(
                "no S3 credentials found: set MUSEHUB_STORAGE_S3_ACCESS_KEY_ID and "
                "MUSEHUB_STORAGE_S3_SECRET_ACCESS_KEY (or the usual AWS variables)"
            )
        with self._errors(self.bucket):
            bucket_url = await BucketUrl.resolve(client, self.bucket)
        self._presigner = S3Presigner(bucket_url, credentials.get_frozen_credentials)
        return self._presigner

    async def _put_multipart(self, client: Any, key: str, source: BinaryIO) -> None:
        """Upload in PART_SIZE parts, PARTS_IN_FLIGHT at a time; abort on any failure."""
        with self._errors(key):
            created = await client.create_multipart_upload(Bucket=self.bucket, Key=key)
        upload_id = created["UploadId"]
        etags: dict[int, str] = {}
        in_flight: set[asyncio.Task[None]] = set()

        async def upload(number: int, data: bytes) -> None:
            response = await client.upload_part(
                Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
            )
            etags[number] = response["ETag"]

        try:
            with self._errors(key):
                number = 0
                while True:
                    if len(in_flight) >= PARTS_IN_FLIGHT:
                        done, in_flight = await asyncio.wait(
                            in_flight, return_when=asyncio.FIRST_COMPLETED
                        )
                        for task in done:
                            task.result()  # re-raise the first failed part
                    # Read only once a slot is free, so at most PARTS_IN_FLIGHT parts sit in RAM.
                    chunk = await asyncio.to_thread(source.read, PART_SIZE)
                    if not chunk:
                        break
                    number += 1
                    in_flight.add(asyncio.create_task(upload(number, chunk)))
                await asyncio.gather(*in_flight)
                parts = [{"PartNumber": n, "ETag": etags[n]} for n in sorted(etags)]
                await client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                )
        except BaseException:
            for task in in_flight:
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)
            # Abort so the bucket keeps no invisible, billed part data.
            with contextlib.suppress(ClientError, BotoCoreError):
                await client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            raise

    @contextlib.contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        """Turn botocore errors into ObjectNotFound / StorageError with a readable message."""
        try:
            yield
        except ClientError as exc:
            code = _code(exc)
            if code in _NOT_FOUND_CODES:
                raise ObjectNotFound(key) from exc
            if code == "NoSuchBucket":
                raise StorageError(
                    f"S3 bucket {self.bucket!r} does not exist; create it or fix "
                    "MUSEHUB_STORAGE_S3_BUCKET"
                ) from exc
            raise StorageError(f"S3 request for {key!r} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"S3 request for {key!r} failed: {exc}") from exc


def _code(exc: BaseException | None) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""
