"""FMC_13 / FMC_14: a clone hits the cache without walking commits or reading one blob; a miss
builds, writes the row, and the next clone hits; a herd of cold clones builds once."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from musehub.db.models import FetchMPackCache
from musehub.services import mpack_cache
from musehub.services.fetch import FetchMPack, FetchMPacks
from musehub.storage import ObjectStorage
from tests.conftest import Hub
from tests.faults import FaultyStorage
from tests.mpack.helpers import VECTOR_HEADS, load_vector
from tests.wire.helpers import PushedRepo, push_vector

VECTOR = load_vector()
MAIN, CHORUS = VECTOR_HEADS["main"], VECTOR_HEADS["chorus"]


async def fetch(
    hub: Hub, repo: PushedRepo, want: list[str], have: list[str], storage: ObjectStorage
) -> FetchMPack:
    """One answer from a fresh FetchMPacks (no answers kept in memory from an earlier call)."""
    fetcher = FetchMPacks(hub.engine, storage, hub.settings)
    answer = await fetcher.answer(repo.owner, repo.slug, want, have, None, form="url")
    assert answer.pack is not None  # a URL-form answer is one pack
    return answer.pack


async def test_miss_builds_and_writes_the_row_then_hit_reads_no_blob(hub: Hub) -> None:
    repo = await push_vector(hub, branches=("main", "chorus"))
    repo_id = repo.repo_id
    storage = FaultyStorage(hub.storage)
    miss = await fetch(hub, repo, [MAIN, CHORUS], [], storage)
    assert miss.cache == "MISS"
    assert storage.reads == len(VECTOR["objects"])
    async with AsyncSession(hub.engine) as session:
        entry = await mpack_cache.lookup(session, repo_id, [CHORUS, MAIN])
    assert entry is not None and entry.sha256 == miss.sha256

    storage.reads = 0
    hit = await fetch(hub, repo, [CHORUS, MAIN, MAIN], [], storage)
    assert hit.cache == "HIT"
    assert storage.reads == 0
    assert (hit.mpack_key, hit.sha256, hit.size) == (miss.mpack_key, miss.sha256, miss.size)


async def test_fetch_with_have_never_touches_the_cache(hub: Hub) -> None:
    repo = await push_vector(hub, branches=("main", "chorus"))
    answer = await fetch(hub, repo, [MAIN], [CHORUS], hub.storage)
    async with AsyncSession(hub.engine) as session:
        rows = await session.scalar(
            select(func.count())
            .select_from(FetchMPackCache)
            .where(FetchMPackCache.repo_id == repo.repo_id)
        )
    assert answer.cache == "UNCACHED"
    assert rows == 0


async def test_concurrent_cold_clones_build_once(hub: Hub) -> None:
    repo = await push_vector(hub, branches=("main", "chorus"))
    storage = FaultyStorage(hub.storage)

    async def clone() -> str:
        return (await fetch(hub, repo, [MAIN], [], storage)).cache

    outcomes = await asyncio.gather(*(clone() for _ in range(8)))
    assert sorted(outcomes) == ["HIT"] * 7 + ["MISS"]
    by_main = {c["commit_id"]: c for c in VECTOR["commits"]}
    assert by_main[MAIN]
    objects_on_main = storage.reads
    assert 0 < objects_on_main <= len(VECTOR["objects"])  # one build's worth of reads
