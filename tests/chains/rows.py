"""Cache rows as time would leave them, for chain tests."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from musehub.services.mpack_cache import cache_id_for
from tests.conftest import Hub

# The row's life moved back whole, its TTL kept: other tests read the table's TTLs.
_EXPIRE = text(
    "UPDATE musehub_fetch_mpack_cache SET expires_at = now() - interval '1 second',"
    " created_at = now() - interval '1 second' - (expires_at - created_at)"
    " WHERE cache_id = :cache_id"
)


async def expire(hub: Hub, repo_id: str, want: list[str]) -> None:
    """The want set's row, expired (as if nobody had cloned it for its TTL)."""
    async with AsyncSession(hub.engine) as session:
        await session.execute(_EXPIRE, {"cache_id": cache_id_for(repo_id, want)})
        await session.commit()
