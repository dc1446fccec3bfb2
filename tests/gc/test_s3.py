"""The same collection against a real S3 endpoint (moto): listing ages, deleting and checking
objects go through the S3 backend."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from musehub.services import gc
from tests.conftest import Hub
from tests.gc.helpers import cache_row, collect_expired, new_repo_id, put_pack
from tests.storage.s3_server import MotoS3


async def test_expired_and_orphaned_packs_are_collected_from_s3(hub: Hub, moto_s3: MotoS3) -> None:
    async with moto_s3.storage(moto_s3.create_bucket()) as s3:
        repo_id = await new_repo_id(hub)
        expired = await put_pack(s3, repo_id, b"expired, on S3")
        orphan = await put_pack(s3, repo_id, b"orphan, on S3")
        named = await put_pack(s3, repo_id, b"named by a live row, on S3")
        await cache_row(hub, repo_id, expired, expires_in=-timedelta(minutes=1), storage=s3)
        await cache_row(hub, repo_id, named, storage=s3)

        _, deleted = await collect_expired(hub, s3)
        await asyncio.sleep(1.1)  # S3 ages have one-second resolution; then grace 0 is "older"
        async with AsyncSession(hub.engine) as session:
            swept = await gc.sweep_orphan_mpacks(session, s3, grace=timedelta(0))

        assert expired in deleted and not await s3.exists(expired)
        assert (swept.deleted, swept.examples) == (1, [orphan])
        assert not await s3.exists(orphan)
        assert await s3.exists(named)
