"""Sliding expiry: a cache hit pushes the pack's expiry forward, at most once per throttle
period, and always past the presigned URL it hands out, so a pack being served is never
collected under its client."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from musehub.db.models import FetchMPackCache
from musehub.services import mpack_cache
from musehub.services.fetch import FetchMPack, FetchMPacks
from tests.conftest import Hub
from tests.gc.helpers import DAY, row, set_expiry
from tests.mpack.helpers import VECTOR_HEADS
from tests.wire.helpers import PushedRepo, push_vector

MAIN = VECTOR_HEADS["main"]


async def clone(hub: Hub, repo: PushedRepo) -> FetchMPack:
    """One clone answer from a fresh FetchMPacks (nothing kept in memory from an earlier one)."""
    fetcher = FetchMPacks(hub.engine, hub.storage, hub.settings)
    answer = await fetcher.answer(repo.owner, repo.slug, [MAIN], [], None, form="url")
    assert answer.pack is not None  # a URL-form answer is one pack
    return answer.pack


def cache_id(repo_id: str) -> str:
    return mpack_cache.cache_id_for(repo_id, [MAIN])


async def test_a_hit_extends_the_expiry_at_most_once_per_throttle_period(hub: Hub) -> None:
    repo = await push_vector(hub, branches=("main", "chorus"))
    repo_id = repo.repo_id
    assert (await clone(hub, repo)).cache == "MISS"
    await set_expiry(hub, cache_id(repo_id), 2 * DAY)

    assert (await clone(hub, repo)).cache == "HIT"
    first = await row(hub, cache_id(repo_id))
    assert first.last_hit_at is not None
    slid_to = datetime.now(UTC) + hub.settings.mpack_cache_ttl
    assert first.expires_at > slid_to - timedelta(minutes=1)

    await set_expiry(hub, cache_id(repo_id), 2 * DAY)
    assert (await clone(hub, repo)).cache == "HIT"
    second = await row(hub, cache_id(repo_id))
    assert second.last_hit_at == first.last_hit_at  # throttled: no write
    assert second.expires_at < datetime.now(UTC) + 3 * DAY


async def test_a_hit_near_expiry_always_outlives_its_presigned_url(hub: Hub) -> None:
    repo = await push_vector(hub, branches=("main", "chorus"))
    repo_id = repo.repo_id
    await clone(hub, repo)
    await clone(hub, repo)  # sets last_hit_at: the next hit is inside the throttle period
    await set_expiry(hub, cache_id(repo_id), timedelta(minutes=2))  # < the 15 min presign TTL

    answer = await clone(hub, repo)
    assert answer.cache == "HIT"
    assert (await row(hub, cache_id(repo_id))).expires_at > answer.expires_at + DAY


async def test_an_entry_collected_after_lookup_is_served_as_a_miss(hub: Hub) -> None:
    repo = await push_vector(hub, branches=("main", "chorus"))
    repo_id = repo.repo_id
    await clone(hub, repo)
    async with AsyncSession(hub.engine) as session:
        entry = await mpack_cache.lookup(session, repo_id, [MAIN])
        assert entry is not None
        await session.execute(
            delete(FetchMPackCache).where(FetchMPackCache.cache_id == entry.cache_id)
        )
        extended = await mpack_cache.extend_on_hit(
            session, entry, ttl=DAY, presign_ttl=timedelta(minutes=15), throttle=DAY
        )
        assert extended is None
        await session.rollback()
