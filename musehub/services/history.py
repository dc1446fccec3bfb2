"""Commit-graph queries. Each is one SQL statement (a recursive CTE), never a query per commit."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


def _closure(name: str, starts_param: str) -> str:
    """A recursive CTE `name(commit_id)`: the ids reachable from :starts_param, parents included.
    Walks parent ids without joining the parent row, so each step is one primary-key lookup."""
    return f"""
{name}(commit_id) AS (
    SELECT unnest(CAST(:{starts_param} AS text[]))
  UNION
    SELECT parent.commit_id
    FROM {name} r
    JOIN musehub_commits c ON c.repo_id = :repo_id AND c.commit_id = r.commit_id
    CROSS JOIN LATERAL (VALUES (c.parent_commit_id), (c.parent2_commit_id)) AS parent(commit_id)
    WHERE parent.commit_id IS NOT NULL
)"""


# Commits reachable from :want and not from :have, ordered by id for deterministic packs.
_MISSING_CLOSURE = text(
    "WITH RECURSIVE"
    + _closure("wanted", "want")
    + ","
    + _closure("had", "have")
    + """
SELECT c.commit_id FROM musehub_commits c
WHERE c.repo_id = :repo_id
  AND c.commit_id IN (SELECT commit_id FROM wanted EXCEPT SELECT commit_id FROM had)
ORDER BY c.commit_id
"""
)
_REACHABLE = "WITH RECURSIVE" + _closure("reach", "starts") + "\n"


async def missing_commit_ids(
    session: AsyncSession, repo_id: str, want: Sequence[str], have: Sequence[str]
) -> list[str]:
    result = await session.execute(
        _MISSING_CLOSURE, {"repo_id": repo_id, "want": list(want), "have": list(have)}
    )
    return list(result.scalars())


async def is_ancestor(session: AsyncSession, repo_id: str, ancestor: str, descendant: str) -> bool:
    """True when `ancestor` is reachable from `descendant` (a commit is its own ancestor)."""
    query = text(_REACHABLE + "SELECT EXISTS (SELECT 1 FROM reach WHERE commit_id = :ancestor)")
    found = await session.scalar(
        query, {"repo_id": repo_id, "starts": [descendant], "ancestor": ancestor}
    )
    return bool(found)


async def existing_commit_ids(session: AsyncSession, repo_id: str, ids: Sequence[str]) -> set[str]:
    result = await session.execute(
        text(
            "SELECT commit_id FROM musehub_commits"
            " WHERE repo_id = :repo_id AND commit_id = ANY(CAST(:ids AS text[]))"
        ),
        {"repo_id": repo_id, "ids": list(ids)},
    )
    return set(result.scalars())


async def first_ancestor_of(
    session: AsyncSession, repo_id: str, candidates: Sequence[str], tips: Sequence[str]
) -> str | None:
    """The first of `candidates`, in the client's order, that the `tips` reach (negotiate)."""
    query = text(
        _REACHABLE
        + "SELECT commit_id FROM reach WHERE commit_id = ANY(CAST(:candidates AS text[]))"
    )
    result = await session.execute(
        query, {"repo_id": repo_id, "starts": list(tips), "candidates": list(candidates)}
    )
    reached = set(result.scalars())
    return next((c for c in candidates if c in reached), None)
