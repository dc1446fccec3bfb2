"""`wire_fetch_mpack`: the answer to `POST /fetch`, as one pack object in storage plus a
presigned URL to it. Both answer forms (URL and inline) are served from that one object."""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from musehub.services.mpack_build import (
    assemble_mpack,
    plan_fetch,
    storage_blob_reader,
    upload_mpack,
)
from musehub.settings import Settings
from musehub.storage import ObjectStorage

log = logging.getLogger("musehub.fetch")


@dataclass(frozen=True)
class FetchMPack:
    mpack_key: str
    size: int
    sha256: str
    url: str
    expires_at: datetime
    commit_count: int
    object_count: int


async def wire_fetch_mpack(
    session: AsyncSession,
    repo_id: str,
    want: list[str],
    have: list[str],
    *,
    storage: ObjectStorage,
    settings: Settings,
) -> FetchMPack:
    """Build the pack of everything `want` reaches and `have` does not, upload it under its
    content address, and presign it."""
    started = time.perf_counter()
    plan = await plan_fetch(session, repo_id, want, have)
    with tempfile.NamedTemporaryFile(dir=settings.work_dir, prefix="fetch-", suffix=".mpack") as out:
        digest = await assemble_mpack(
            session, plan, out, storage_blob_reader(storage),
            concurrency=settings.storage.read_concurrency,
        )
        out.flush()
        key = await upload_mpack(storage, repo_id, Path(out.name), digest)
    url, expires_at = await presign(storage, settings, key)
    log.info(
        "[wire_fetch_mpack] built repo=%s commits=%d objects=%d bytes=%d t=%.0fms",
        repo_id, len(plan.commit_ids), len(plan.objects), digest.size,
        (time.perf_counter() - started) * 1000,
    )
    return FetchMPack(
        mpack_key=key, size=digest.size, sha256=digest.sha256, url=url,
        expires_at=expires_at, commit_count=len(plan.commit_ids), object_count=len(plan.objects),
    )


async def presign(storage: ObjectStorage, settings: Settings, key: str) -> tuple[str, datetime]:
    ttl = settings.storage.presign_ttl_seconds
    url = await storage.presign_get(key, ttl)
    return url, datetime.now(UTC) + timedelta(seconds=ttl)
