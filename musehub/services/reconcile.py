"""Reconcile: start the prebuild of branch tips (and head sets) that have no live pack.

Push enqueues the prebuild best effort; when Temporal was down at push time nothing was
enqueued, so the GC run looks for what is missing and starts those prebuilds (signal-with-start,
idempotent: a running prebuild just gets the tips again and skips the fresh packs)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from musehub.services.prebuild_trigger import request_prebuild
from musehub.settings import Settings


@dataclass(frozen=True)
class RepoMissingPacks:
    repo_id: str
    name: str
    # Every distinct branch head, sorted: what the prebuild is asked to build.
    tips: list[str]
    # Want sets (one per tip, plus the head set) without a live pack.
    missing: int


@dataclass(frozen=True)
class ReconcileOutcome:
    repos: int
    tips: int


# Hex ids sort the same in every collation; "C" makes the head set's order match Python's sort.
_MISSING = text("""
WITH heads AS (
    SELECT b.repo_id,
           array_agg(DISTINCT b.head_commit_id::text COLLATE "C"
                     ORDER BY b.head_commit_id::text COLLATE "C") AS tips
    FROM musehub_branches b
    GROUP BY b.repo_id
), missing AS (
    SELECT h.repo_id, h.tips,
           (SELECT count(*) FROM unnest(h.tips) AS t(tip)
            WHERE NOT EXISTS (
                SELECT 1 FROM musehub_fetch_mpack_cache c
                WHERE c.repo_id = h.repo_id AND c.tip_commit_id = t.tip AND c.expires_at > now()))
         + CASE WHEN cardinality(h.tips) > 1 AND NOT EXISTS (
                SELECT 1 FROM musehub_fetch_mpack_cache c
                WHERE c.repo_id = h.repo_id AND c.tip_commit_id IS NULL
                  AND c.want_commit_ids::text[] = h.tips AND c.expires_at > now())
           THEN 1 ELSE 0 END AS missing
    FROM heads h
)
SELECT r.repo_id, r.owner || '/' || r.slug AS name, m.tips, m.missing
FROM missing m JOIN musehub_repos r ON r.repo_id = m.repo_id
WHERE m.missing > 0
ORDER BY r.pushed_at ASC NULLS LAST, r.repo_id
LIMIT :limit
""")


async def repos_missing_packs(session: AsyncSession, *, limit: int) -> list[RepoMissingPacks]:
    """Repos with a branch tip or head set that no live pack answers, oldest push first (those
    have waited longest), at most `limit` of them."""
    rows = await session.execute(_MISSING, {"limit": limit})
    return [RepoMissingPacks(r.repo_id, r.name, list(r.tips), r.missing) for r in rows]


async def reconcile_prebuilds(
    session: AsyncSession, client: Client, settings: Settings, *, limit: int
) -> ReconcileOutcome:
    """Start (or signal) the prebuild of every repo `repos_missing_packs` finds."""
    repos = await repos_missing_packs(session, limit=limit)
    await session.rollback()  # read only: end the transaction before talking to Temporal
    for repo in repos:
        await request_prebuild(
            client, settings, repo_id=repo.repo_id, repo_name=repo.name, tips=repo.tips
        )
    return ReconcileOutcome(len(repos), sum(repo.missing for repo in repos))
