"""The tests' S3 endpoint stores what the muse client uploads: urllib PUTs to presigned URLs with
a form Content-Type, which plain moto stores nothing of (getmoto/moto#3363)."""

from __future__ import annotations

import os

import httpx

from musehub.devstack.moto_s3 import FORM_TYPE
from tests.storage.s3_server import MotoS3


async def test_a_form_typed_put_to_a_presigned_url_is_stored_whole(moto_s3: MotoS3) -> None:
    content = os.urandom(3 * 1024 * 1024 + 7)  # bytes no form parser would accept
    async with moto_s3.storage(moto_s3.create_bucket()) as storage:
        url = await storage.presign_put("uploads/blob", 300)
        async with httpx.AsyncClient(timeout=30) as client:
            answer = await client.put(url, content=content, headers={"Content-Type": FORM_TYPE})
        assert answer.status_code == 200
        assert await storage.get("uploads/blob") == content
