"""Appending a push to a chain, in the two halves the prebuild runs on either side of its build:
`plan_top_up` chooses the chain to append to and plans what the new want set adds to it;
`record_top_up` records the built pack as that chain's next part. The prebuild's activities
(`activities/prebuild.py`) and the chain property tests call these same two functions, so what
the tests check is what the prebuild does (`musehub/services/chains.py` has the argument)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from musehub.mpack.writer import PackDigest
from musehub.services import chains, mpack_cache
from musehub.services.chains import Chain, ChainPart
from musehub.services.mpack_build import FetchPlan, plan_fetch
from musehub.storage import ObjectStorage

# A chain this many times its compaction bound long means compaction keeps failing: stop
# appending to it.
MAX_UNCOMPACTED_PARTS = 4


class PartGone(Exception):
    """A pack the new row would name is not in storage any more (collected, lost) or its chain
    is gone: the build has nothing to stand on and starts over."""


async def plan_top_up(
    session: AsyncSession, repo_id: str, want: Sequence[str], *, compact_parts: int
) -> tuple[FetchPlan, list[str]]:
    """What to build for `want`, and the want set whose chain it tops up (empty: a base). When
    a live chain's position is an ancestor of `want`, only what `want` adds to it is planned: a
    push costs what it changed. A chain `MAX_UNCOMPACTED_PARTS` times its compaction bound
    (`compact_parts`) long is not appended to: a new base rather than a longer chain. Raises
    NotFound when a commit of `want` is not in the repository."""
    base = await chains.closest_base(session, repo_id, want)
    if base is not None and len(base[1].parts) >= MAX_UNCOMPACTED_PARTS * compact_parts:
        base = None  # compaction is failing: a new base rather than a longer chain
    base_want = base[0] if base is not None else []
    plan = await plan_fetch(session, repo_id, want, base_want)
    return plan, base_want


async def hold_stored(session: AsyncSession, storage: ObjectStorage, key: str, size: int) -> None:
    """Hold the pack object until the caller commits, if it is still stored whole; else
    PartGone."""
    await mpack_cache.hold_mpack_object(session, key)
    if await storage.size(key) != size:
        raise PartGone(f"pack {key} was collected before it was recorded")


async def record_top_up(
    session: AsyncSession,
    storage: ObjectStorage,
    *,
    repo_id: str,
    want: Sequence[str],
    base_want: Sequence[str],
    mpack_id: str,
    digest: PackDigest,
    ttl: timedelta,
) -> tuple[str, Chain]:
    """The built pack `mpack_id` as a part, and `want`'s row as the chain of `base_want` (the
    plan's base) plus this part, or this part alone (a base). An empty top-up adds nothing: the
    row is the base's chain. The base's parts are held until the caller commits; a base chain
    gone since the plan (expired, lost) raises PartGone. The caller holds the new pack's object
    and commits. (cache id, chain)."""
    base: Chain = Chain(())
    if base_want:
        entry = await mpack_cache.lookup(session, repo_id, base_want)
        if entry is None or entry.chain is None:
            raise PartGone(f"the chain of {list(base_want)} this top-up builds on is gone")
        base = entry.chain
        for part in base.parts:
            await hold_stored(session, storage, part.mpack_id, part.size)
    chain = base
    if not base.parts or digest.sections[0].count:  # an empty top-up adds nothing
        await chains.record_part(session, repo_id, mpack_id, digest)
        part = ChainPart(mpack_id, digest.size, digest.sha256, tuple(want), digest.sections)
        chain = Chain((*base.parts, part))
    cache_id = await mpack_cache.record_chain(
        session, repo_id=repo_id, want=want, chain=chain, ttl=ttl
    )
    return cache_id, chain
