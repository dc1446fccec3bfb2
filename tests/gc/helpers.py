"""Cache rows and pack objects made to order for the GC tests: expired or fresh, shared or not,
and objects aged past the grace period (`age`, on either backend)."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from musehub.db.models import FetchMPackCache
from musehub.services import gc, mpack_cache
from musehub.services.keys import mpack_key
from musehub.services.repos import find_repo
from musehub.storage import ObjectStorage
from tests.conftest import Hub
from tests.hub_storage import age

__all__ = ["age"]  # the GC tests age objects through here, on either backend

DAY = timedelta(days=1)


def commit_id() -> str:
    return hashlib.sha256(uuid.uuid4().bytes).hexdigest()


async def new_repo_id(hub: Hub) -> str:
    owner, slug, _ = await hub.create_repo()
    async with AsyncSession(hub.engine) as session:
        repo = await find_repo(session, owner, slug)
        assert repo is not None
        return repo.repo_id


async def clear_what_other_tests_left(hub: Hub, *, grace: timedelta) -> None:
    """Previews list only the first few keys of each kind: expired rows and orphans that other
    tests left in the shared database and folder would push a test's own keys off the list.
    Any GC run deletes them all anyway; this does it first."""
    async with AsyncSession(hub.engine) as session:
        while (await gc.delete_expired_rows(session, limit=1000)).rows_deleted:
            pass
        await gc.sweep_orphan_mpacks(session, hub.storage, grace=grace)


async def put_pack(storage: ObjectStorage, repo_id: str, content: bytes) -> str:
    key = mpack_key(repo_id, hashlib.sha256(content).hexdigest())
    await storage.put(key, content)
    return key


async def cache_row(
    hub: Hub,
    repo_id: str,
    key: str,
    *,
    want: list[str] | None = None,
    expires_in: timedelta = 7 * DAY,
    storage: ObjectStorage | None = None,
) -> str:
    """A cache row naming the pack `key` (in `storage`, default the hub's), expiring
    `expires_in` from now (negative: expired)."""
    size = await (storage or hub.storage).size(key)
    assert size is not None
    async with AsyncSession(hub.engine) as session:
        entry = await mpack_cache.record(
            session,
            repo_id=repo_id,
            want=want or [commit_id()],
            mpack_id=key,
            size_bytes=size,
            sha256=key.rsplit("/", 1)[1].removesuffix(".mpack"),
            commit_count=1,
            object_count=1,
            ttl=7 * DAY,
        )
        await session.commit()
    await set_expiry(hub, entry.cache_id, expires_in)
    return entry.cache_id


async def set_expiry(hub: Hub, cache_id: str, expires_in: timedelta) -> None:
    async with AsyncSession(hub.engine) as session:
        await session.execute(
            update(FetchMPackCache)
            .where(FetchMPackCache.cache_id == cache_id)
            .values(expires_at=datetime.now(UTC) + expires_in)
        )
        await session.commit()


async def row_exists(hub: Hub, cache_id: str) -> bool:
    async with AsyncSession(hub.engine) as session:
        return await session.get(FetchMPackCache, cache_id) is not None


async def row(hub: Hub, cache_id: str) -> FetchMPackCache:
    async with AsyncSession(hub.engine) as session:
        found = await session.scalar(
            select(FetchMPackCache).where(FetchMPackCache.cache_id == cache_id)
        )
        assert found is not None
        return found


async def collect_expired(hub: Hub, storage: ObjectStorage) -> tuple[int, list[str]]:
    """Steps 1 and 2 as the GC workflow runs them: rows first, then the objects they named."""
    async with AsyncSession(hub.engine) as session:
        expired = await gc.delete_expired_rows(session, limit=500)
        deleted = [
            key
            for key in expired.mpack_ids
            if await gc.delete_if_unnamed(session, storage, key) is not None
        ]
    return expired.rows_deleted, deleted
