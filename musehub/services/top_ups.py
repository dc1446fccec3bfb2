"""Appending a push to a chain, in the two halves the prebuild runs on either side of its build:
`plan_top_up` chooses the chain to append to and plans what the new want set adds to it;
`record_top_up` records the built pack as that chain's next part. The prebuild's activities
(`activities/prebuild.py`) and the chain property tests call these same two functions, so what
the tests check is what the prebuild does (`musehub/services/chains.py` has the argument)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from musehub.mpack.writer import PackDigest
from musehub.services import chains, history, mpack_cache
from musehub.services.chains import BaseChain, Chain, ChainPart
from musehub.services.mpack_build import FetchPlan, plan_fetch, plan_of_commits
from musehub.storage import ObjectStorage

# A chain this many times its compaction bound long means compaction keeps failing: stop
# appending to it.
MAX_UNCOMPACTED_PARTS = 4
# The most commits the quick plan walks (finding the chain, then what was pushed since it):
# the prebuild's cache check runs it under a short timeout, and a one-commit push walks one.
QUICK_MAX_COMMITS = 5_000


class PartGone(Exception):
    """A pack the new row would name is not in storage any more (collected, lost) or its chain
    is gone: the build has nothing to stand on and starts over."""


async def plan_top_up(
    session: AsyncSession,
    repo_id: str,
    want: Sequence[str],
    *,
    compact_parts: int,
    fresh_base: bool = False,
) -> tuple[FetchPlan, list[str]]:
    """What to build for `want`, and the want set whose chain it tops up (empty: a base). When
    a live chain's position is an ancestor of `want`, only what `want` adds to it is planned: a
    push costs what it changed. A chain `MAX_UNCOMPACTED_PARTS` times its compaction bound
    (`compact_parts`) long is not appended to, and `fresh_base` (a forced rebuild) appends to
    none: a new base. Raises NotFound when a commit of `want` is not in the repository."""
    base = None if fresh_base else await _base_for(session, repo_id, want, compact_parts, None)
    if base is None:
        return await plan_fetch(session, repo_id, want, []), []
    plan = await _quick_plan(session, repo_id, want, base, None)
    if plan is None:
        plan = await less_held(session, await plan_fetch(session, repo_id, want, base.want), base)
    return plan, base.want


async def plan_quick_top_up(
    session: AsyncSession,
    repo_id: str,
    want: Sequence[str],
    *,
    compact_parts: int,
    steps: dict[str, float] | None = None,
) -> tuple[FetchPlan, list[str]] | None:
    """`plan_top_up`'s plan when it reads only what was pushed since the base chain (see
    `_added_since`), walking at most QUICK_MAX_COMMITS commits; None when `want` needs a base,
    a walk of the base's history, or a longer walk. `steps`: seconds per step, for the log."""
    steps = {} if steps is None else steps
    mark = time.perf_counter()
    base = await _base_for(session, repo_id, want, compact_parts, QUICK_MAX_COMMITS)
    steps["base"] = time.perf_counter() - mark
    if base is None:
        return None
    quick = await _quick_plan(session, repo_id, want, base, QUICK_MAX_COMMITS, steps)
    return None if quick is None else (quick, base.want)


async def _base_for(
    session: AsyncSession,
    repo_id: str,
    want: Sequence[str],
    compact_parts: int,
    max_walk: int | None,
) -> BaseChain | None:
    base = await chains.closest_base(session, repo_id, want, max_walk=max_walk)
    if base is not None and len(want) > 1 and len(base.want) == 1 and base.want[0] in want:
        # The head set's check runs beside its tips' (workflow PARALLEL_CHECKS_PATCH): a tip's
        # row just recorded stops the walk at that tip and hides the head set's own older row,
        # and a one-tip base leaves the other tips' histories to the long way. Look past the
        # want set's own tips for a row that holds more of it.
        past = await chains.closest_base(session, repo_id, want, max_walk=max_walk, expand=want)
        if past is not None and past.chain.commit_count >= base.chain.commit_count:
            base = past
    if base is not None and len(base.chain.parts) >= MAX_UNCOMPACTED_PARTS * compact_parts:
        return None  # compaction is failing: a new base rather than a longer chain
    return base


async def _quick_plan(
    session: AsyncSession,
    repo_id: str,
    want: Sequence[str],
    base: BaseChain,
    max_walk: int | None,
    steps: dict[str, float] | None = None,
) -> FetchPlan | None:
    steps = {} if steps is None else steps
    mark = time.perf_counter()
    added = await _added_since(session, repo_id, want, base, max_walk)
    steps["added"] = time.perf_counter() - mark
    if added is None or not await _all_known(session, repo_id, want):
        return None
    mark = time.perf_counter()
    plan = await plan_of_commits(session, repo_id, added)
    steps["plan"] = time.perf_counter() - mark
    mark = time.perf_counter()
    plan = await less_held(session, plan, base)
    steps["held"] = time.perf_counter() - mark
    return plan


async def less_held(session: AsyncSession, plan: FetchPlan, base: BaseChain) -> FetchPlan:
    """The plan less the snapshots and objects the base chain's parts hold already. The plan
    itself leaves out only those of its boundary snapshots; a record of the history older than
    the boundary (a file reverted to an old blob, a tree seen before, a blob another branch
    brought in earlier) would otherwise be sent again, and a chain joined into one pack or
    applied part by part would carry it twice. A client at any position of the chain holds
    every part up to it, so leaving them out loses nothing."""
    snapshots, objects = await chains.held_by(
        session, base.chain, plan.snapshot_ids, [o.object_id for o in plan.objects]
    )
    if not snapshots and not objects:
        return plan
    return FetchPlan(
        plan.repo_id,
        plan.commit_ids,
        [s for s in plan.snapshot_ids if s not in snapshots],
        [o for o in plan.objects if o.object_id not in objects],
    )


async def record_held(session: AsyncSession, repo_id: str, mpack_id: str, plan: FetchPlan) -> None:
    """Record what the part built from `plan` holds, for the top-ups after it to leave out."""
    await chains.record_held(
        session, repo_id, mpack_id, plan.snapshot_ids, [o.object_id for o in plan.objects]
    )


async def _all_known(session: AsyncSession, repo_id: str, want: Sequence[str]) -> bool:
    """Whether every commit of `want` is in the repository (plan_fetch says which is not)."""
    return set(want) <= await history.existing_commit_ids(session, repo_id, want)


# What :want adds to the base row's history, walked from :want down to the base's want set,
# each commit with whether the hub received it before the base row was recorded.
_ADDED = text(
    """
WITH RECURSIVE added(commit_id, received_before) AS (
    SELECT c.commit_id, c.created_at <= :recorded_at
    FROM musehub_commits c
    WHERE c.repo_id = :repo_id AND c.commit_id = ANY(CAST(:want AS text[]))
      AND NOT c.commit_id = ANY(CAST(:base AS text[]))
  UNION
    SELECT p.commit_id, p.created_at <= :recorded_at
    FROM added a
    JOIN musehub_commits c ON c.repo_id = :repo_id AND c.commit_id = a.commit_id
    CROSS JOIN LATERAL (VALUES (c.parent_commit_id), (c.parent2_commit_id)) AS parent(commit_id)
    JOIN musehub_commits p ON p.repo_id = :repo_id AND p.commit_id = parent.commit_id
    WHERE NOT a.received_before AND NOT parent.commit_id = ANY(CAST(:base AS text[]))
)
SELECT commit_id, received_before
FROM (SELECT * FROM added LIMIT :max_walk) AS walked  -- NULL: all; the walk stops at the limit
ORDER BY commit_id
"""
)


async def _added_since(
    session: AsyncSession, repo_id: str, want: Sequence[str], base: BaseChain, max_walk: int | None
) -> list[str] | None:
    """The commits `want` reaches and the base's want set does not, read without walking the
    base's history; None when that cannot be told so (the caller walks both histories).

    The base row's chain holds only commits the hub had received when the row was recorded
    (`recorded_at`, the database's clock, like each commit's `created_at`). So a commit received
    since is not in it, and the walk from `want` goes down through such commits, stopping at the
    base's want set. If it meets none received earlier, it is exactly the difference: a commit
    `want` reaches but the base does not is reached along a path that avoids the base's want
    set, and every commit on that path is new. A commit received earlier may or may not be the
    base's (a merge of an older branch, a row from before `recorded_at`): then None, and
    None past `max_walk` commits."""
    if base.recorded_at is None:
        return None
    rows = await session.execute(
        _ADDED,
        {
            "repo_id": repo_id,
            "want": list(want),
            "base": base.want,
            "recorded_at": base.recorded_at,
            "max_walk": max_walk,
        },
    )
    added = rows.all()
    if max_walk is not None and len(added) >= max_walk:
        return None
    if any(received_before for _, received_before in added):
        return None
    return [commit_id for commit_id, _ in added]


async def hold_stored(session: AsyncSession, storage: ObjectStorage, key: str, size: int) -> None:
    """Hold the pack object until the caller commits, if it is still stored whole; else
    PartGone."""
    await mpack_cache.hold_mpack_object(session, key)
    if await storage.size(key) != size:
        raise PartGone(f"pack {key} was collected before it was recorded")


# The advisory lock of `mpack_cache.hold_mpack_object`, taken for many objects in one statement
# (in key order, so two callers never wait on each other crosswise).
_HOLD_ALL = text(
    """
SELECT count(pg_advisory_xact_lock(hashtextextended('mpack-object/' || k, 0)))
FROM (SELECT k FROM unnest(CAST(:keys AS text[])) AS k ORDER BY k) AS keys
"""
)


async def hold_all_stored(
    session: AsyncSession, storage: ObjectStorage, parts: Sequence[ChainPart]
) -> None:
    """`hold_stored` for every part, in one statement and with the storage checks at once: a
    chain's length costs one round trip to the database and one to storage, not one each."""
    if not parts:
        return
    await session.execute(_HOLD_ALL, {"keys": sorted({p.mpack_id for p in parts})})
    sizes = await asyncio.gather(*(storage.size(p.mpack_id) for p in parts))
    for part, size in zip(parts, sizes, strict=True):
        if size != part.size:
            raise PartGone(f"pack {part.mpack_id} was collected before it was recorded")


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
        await hold_all_stored(session, storage, base.parts)
    chain = base
    if not base.parts or digest.sections[0].count:  # an empty top-up adds nothing
        await chains.record_part(session, repo_id, mpack_id, digest)
        part = ChainPart(mpack_id, digest.size, digest.sha256, tuple(want), digest.sections)
        chain = Chain((*base.parts, part))
    cache_id = await mpack_cache.record_chain(
        session, repo_id=repo_id, want=want, chain=chain, ttl=ttl
    )
    return cache_id, chain
