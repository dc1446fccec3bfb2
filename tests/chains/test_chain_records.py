"""Chains recorded and read back (musehub/services/chains.py): a base, a top-up appended on the
furthest ancestor position, the suffix a fetch needs, and the joined pack equal to a full
build's records."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from musehub.mpack.chain import joined_stream
from musehub.mpack.reader import read_mpack
from musehub.mpack.writer import PackDigest
from musehub.services import chains, mpack_cache, top_ups
from musehub.services.chains import Chain, ChainPart
from musehub.services.mpack_build import build_and_upload
from musehub.services.mpack_cache import cache_id_for
from tests.chains.history import History
from tests.chains.rows import expire
from tests.chains.test_chain_e2e import fetch
from tests.conftest import Hub

TTL = timedelta(days=7)  # the default: other tests read the table


async def repo_id_of(session: AsyncSession, owner: str, slug: str) -> str:
    query = text("SELECT repo_id FROM musehub_repos WHERE owner = :owner AND slug = :slug")
    return str(await session.scalar(query, {"owner": owner, "slug": slug}))


async def build_part(
    hub: Hub, session: AsyncSession, repo_id: str, want: list[str], have: list[str]
) -> ChainPart:
    built = await build_and_upload(
        session,
        repo_id,
        want,
        have,
        storage=hub.storage,
        work_dir=hub.settings.work_dir,
        read_concurrency=8,
    )
    await chains.record_part(session, repo_id, built.key, built.digest)
    digest = built.digest
    return ChainPart(built.key, digest.size, digest.sha256, tuple(want), digest.sections)


async def contents(hub: Hub, chain: Chain) -> dict[str, Any]:
    async def read_range(key: str, start: int, end: int) -> AsyncIterator[bytes]:
        async for chunk in hub.storage.stream(key, start=start, end=end):
            yield chunk

    data = b"".join([c async for c in joined_stream([p.stored for p in chain.parts], read_range)])
    pack = read_mpack(io.BytesIO(data))
    return {
        "commits": {c["commit_id"] for c in pack.commits},
        "snapshots": {s["snapshot_id"] for s in pack.snapshots},
        "objects": {o["object_id"] for o in pack.objects},
    }


async def test_a_top_up_appends_to_the_furthest_ancestor_chain(hub: Hub) -> None:
    owner, slug, token = await hub.create_repo()
    history = History()
    c1 = history.commit([], {"a": b"one", "b": b"same"})
    c2 = history.commit([c1], {"a": b"two", "b": b"same"})
    c3 = history.commit([c2], {"a": b"three", "b": b"same", "c": b"new"})
    side = history.commit([c1], {"a": b"side"})
    await history.push(hub, owner, slug, token, "main", c3)
    await history.push(hub, owner, slug, token, "side", side)
    async with AsyncSession(hub.engine) as session:
        repo = await repo_id_of(session, owner, slug)
        base = await build_part(hub, session, repo, [c1], [])
        await mpack_cache.record_chain(
            session, repo_id=repo, want=[c1], chain=Chain((base,)), ttl=TTL
        )
        await session.commit()

        found = await chains.closest_base(session, repo, [c3])
        assert found is not None and found.want == [c1]
        top_up = await build_part(hub, session, repo, [c3], found.want)
        assert top_up.sections[0].count == 2  # c2 and c3, nothing of c1
        chain = Chain((*found.chain.parts, top_up))
        await mpack_cache.record_chain(session, repo_id=repo, want=[c3], chain=chain, ttl=TTL)
        await session.commit()

        loaded = await chains.load_chain(session, cache_id_for(repo, [c3]))
        assert loaded == chain
        from_side = await chains.closest_base(session, repo, [side])
        assert from_side is not None
        assert (from_side.want, from_side.chain) == ([c1], Chain((base,)))
        full = await build_part(hub, session, repo, [c3], [])
        await session.rollback()

    assert await contents(hub, chain) == await contents(hub, Chain((full,)))
    assert chain.after([c1]) == Chain((top_up,))
    assert chain.after([c3, "x" * 64]) == Chain(())
    assert chain.after([c2]) is None  # not a position of this chain


async def test_no_chain_is_a_base_for_history_it_does_not_reach(hub: Hub) -> None:
    owner, slug, token = await hub.create_repo()
    history = History()
    c1 = history.commit([], {"a": b"one"})
    c2 = history.commit([c1], {"a": b"two"})
    rewritten = history.commit([c1], {"a": b"rewritten"})
    await history.push(hub, owner, slug, token, "main", c2)
    await history.push(hub, owner, slug, token, "main", rewritten, force=True)
    async with AsyncSession(hub.engine) as session:
        repo = await repo_id_of(session, owner, slug)
        part = await build_part(hub, session, repo, [c2], [])
        await mpack_cache.record_chain(
            session, repo_id=repo, want=[c2], chain=Chain((part,)), ttl=TTL
        )
        await session.commit()
        assert await chains.closest_base(session, repo, [rewritten]) is None


async def test_a_row_whose_chain_ends_at_an_expired_rows_position_is_still_a_base(
    hub: Hub,
) -> None:
    """A want set whose history equals an earlier position's gets that chain as it is (an empty
    top-up adds no part): its row's chain ends at the other want set's position. Rows expire
    one by one (a tip's row is slid by its own clones), so that position's row may be gone
    while this one lives: appending to this row must find it by its own want set."""
    owner, slug, token = await hub.create_repo()
    history = History()
    c1 = history.commit([], {"a": b"one"})
    c2 = history.commit([c1], {"a": b"two"})
    c3 = history.commit([c2], {"a": b"three"})
    await history.push(hub, owner, slug, token, "main", c3)
    async with AsyncSession(hub.engine) as session:
        repo = await repo_id_of(session, owner, slug)
        base = await build_part(hub, session, repo, [c1], [])
        top_up = await build_part(hub, session, repo, [c1, c2], [c1])
        chain = Chain((base, top_up))  # its last position: [c1, c2]
        for want, recorded in (([c1], Chain((base,))), ([c1, c2], chain), ([c2], chain)):
            await mpack_cache.record_chain(
                session, repo_id=repo, want=want, chain=recorded, ttl=TTL
            )
        await session.commit()
        await expire(hub, repo, [c1, c2])

        plan, base_want = await top_ups.plan_top_up(session, repo, [c3], compact_parts=32)
        assert plan.commit_ids == [c3]
        built = await build_part(hub, session, repo, [c3], base_want)
        await top_ups.hold_stored(session, hub.storage, built.mpack_id, built.size)
        _, appended = await top_ups.record_top_up(
            session,
            hub.storage,
            repo_id=repo,
            want=[c3],
            base_want=base_want,
            mpack_id=built.mpack_id,
            digest=PackDigest(built.size, built.sha256, built.sections),
            ttl=TTL,
        )
        await session.commit()
    assert appended == Chain((base, top_up, built))


async def test_a_pack_built_for_a_clone_miss_records_what_it_holds(hub: Hub) -> None:
    """The synchronous path's pack (a cold clone) is a chain's base like the prebuild's: a
    top-up on it leaves out what it holds, here a blob an older commit had and the new one
    brings back (the plan itself only leaves out the boundary snapshot's objects)."""
    owner, slug, token = await hub.create_repo()
    history = History()
    c1 = history.commit([], {"a": b"first"})
    c2 = history.commit([c1], {"a": b"second"})
    reverted = history.commit([c2], {"a": b"first"})
    await history.push(hub, owner, slug, token, "main", c2)
    assert (await fetch(hub, owner, slug, [c2], [], ["mpack-url"])).status_code == 200
    await history.push(hub, owner, slug, token, "main", reverted)
    async with AsyncSession(hub.engine) as session:
        repo = await repo_id_of(session, owner, slug)
        plan, base_want = await top_ups.plan_top_up(session, repo, [reverted], compact_parts=32)
    assert base_want == [c2]  # the clone miss's row is the base
    assert plan.commit_ids == [reverted]
    assert plan.objects == []  # b"first" is in the base already
