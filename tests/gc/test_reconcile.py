"""Reconcile finds the branch tips and head sets that no live pack answers (a push made while
Temporal was down enqueued nothing)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from musehub.services.reconcile import repos_missing_packs
from tests.conftest import Hub
from tests.gc.helpers import cache_row, put_pack
from tests.mpack.helpers import VECTOR_HEADS
from tests.wire.helpers import push_vector

MAIN, CHORUS = VECTOR_HEADS["main"], VECTOR_HEADS["chorus"]


async def missing_for(hub: Hub, repo_id: str) -> int | None:
    async with AsyncSession(hub.engine) as session:
        found = await repos_missing_packs(session, limit=100_000)
    return next((repo.missing for repo in found if repo.repo_id == repo_id), None)


async def test_every_tip_and_the_head_set_without_a_live_pack_is_found(hub: Hub) -> None:
    repo_id = (
        await push_vector(hub, branches=("main", "chorus"))
    ).repo_id  # two branches: main and chorus, no prebuild ran
    assert await missing_for(hub, repo_id) == 3

    key = await put_pack(hub.storage, repo_id, b"a pack for main")
    await cache_row(hub, repo_id, key, want=[MAIN])
    assert await missing_for(hub, repo_id) == 2

    await cache_row(hub, repo_id, key, want=[CHORUS], expires_in=-timedelta(minutes=1))
    assert await missing_for(hub, repo_id) == 2  # an expired pack does not count

    await cache_row(hub, repo_id, key, want=[CHORUS])
    await cache_row(hub, repo_id, key, want=[CHORUS, MAIN])
    assert await missing_for(hub, repo_id) is None
