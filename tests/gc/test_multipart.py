"""GC aborts multipart uploads (S3) left unfinished past the grace period: a process killed
mid-upload leaves parts that are billed and that no listing of objects shows."""

from __future__ import annotations

from datetime import UTC, datetime

from musehub.services import gc
from musehub.storage import LatencyInjectingStorage, ObjectStorage, S3Storage
from tests.conftest import Hub
from tests.gc.helpers import DAY, commit_id, new_repo_id
from tests.storage.s3_server import MotoS3


def s3_of(storage: ObjectStorage) -> S3Storage:
    while isinstance(storage, LatencyInjectingStorage):
        storage = storage.inner
    assert isinstance(storage, S3Storage), storage
    return storage


async def unfinished(storage: ObjectStorage) -> set[str]:
    return {upload.key async for upload in storage.list_unfinished_uploads()}


async def test_unfinished_multipart_uploads_are_aborted_after_the_grace_period(hub: Hub) -> None:
    if hub.backend != "s3":
        assert await unfinished(hub.storage) == set()  # a local folder has none
        return
    s3 = s3_of(hub.storage)
    client = await s3._get_client()
    key = f"mpacks/{await new_repo_id(hub)}/{commit_id()}.mpack"
    started = await client.create_multipart_upload(Bucket=s3.bucket, Key=key)
    await client.upload_part(
        Bucket=s3.bucket, Key=key, UploadId=started["UploadId"], PartNumber=1, Body=b"x" * 1024
    )
    assert key in await unfinished(hub.storage)
    # moto says every upload began on 2010-11-10: a grace reaching back past that keeps it.
    began = min([u.initiated async for u in hub.storage.list_unfinished_uploads()])
    younger = datetime.now(UTC) - began + DAY

    kept = await gc.sweep_stale_uploads(hub.storage, grace=younger)
    listed = await gc.sweep_stale_uploads(hub.storage, grace=DAY, dry_run=True)
    assert f"multipart:{key}" not in kept.examples and key in await unfinished(hub.storage)
    assert f"multipart:{key}" in listed.examples and key in await unfinished(hub.storage)

    swept = await gc.sweep_stale_uploads(hub.storage, grace=DAY)
    assert f"multipart:{key}" in swept.examples
    assert key not in await unfinished(s3)
    assert not await hub.storage.exists(key)


async def test_aborting_an_upload_already_gone_is_not_an_error(moto_s3: MotoS3) -> None:
    async with moto_s3.storage(moto_s3.create_bucket()) as s3:
        client = await s3._get_client()
        key = f"uploads/{commit_id()}"
        started = await client.create_multipart_upload(Bucket=s3.bucket, Key=key)
        [upload] = [u async for u in s3.list_unfinished_uploads(key) if u.key == key]
        assert upload.upload_id == started["UploadId"]
        await s3.abort_unfinished_upload(upload)
        await s3.abort_unfinished_upload(upload)  # NoSuchUpload: completed or aborted meanwhile
        assert key not in await unfinished(s3)
