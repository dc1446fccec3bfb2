"""The warm clone's one database round trip: the repo, its live cache entry for this want set
and its branch heads, in a single statement outside any transaction.

A clone (`have == []`) of a repo whose pack is prebuilt must cost one lookup and one presign
whatever the repo's size; an ORM session with BEGIN/COMMIT and three queries costs several round
trips and most of the request's time, so this path reads with one Core statement instead."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from musehub.services.mpack_cache import CacheEntry, normalise_want

# cache_id = sha256(repo_id NUL want1 NUL want2 ...), as mpack_cache.cache_id_for computes it;
# the NUL-joined suffix travels as bytea because PostgreSQL text cannot hold NUL.
_CLONE_LOOKUP = text(
    """
SELECT r.repo_id, r.owner, r.visibility,
       c.cache_id, c.mpack_id, c.size_bytes, c.sha256, c.expires_at, c.last_hit_at,
       coalesce((SELECT json_object_agg(b.name, b.head_commit_id ORDER BY b.name)
                 FROM musehub_branches b WHERE b.repo_id = r.repo_id), '{}') AS heads
FROM musehub_repos r
LEFT JOIN musehub_fetch_mpack_cache c
  ON c.cache_id = encode(sha256(convert_to(r.repo_id, 'UTF8') || :want_suffix), 'hex')
 AND c.expires_at > now()
WHERE r.owner = :owner AND r.slug = :slug
"""
)


@dataclass(frozen=True)
class CloneLookup:
    repo_id: str
    owner: str
    visibility: str
    branch_heads: dict[str, str]
    entry: CacheEntry | None


def want_suffix(want: Iterable[str]) -> bytes:
    return b"".join(b"\x00" + w.encode() for w in normalise_want(want))


async def lookup_clone(
    engine: AsyncEngine, owner: str, slug: str, want: Iterable[str]
) -> CloneLookup | None:
    """None when no such repo; `entry` None when no live pack answers this want set."""
    async with engine.connect() as connection:
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
        result = await autocommit.execute(
            _CLONE_LOOKUP, {"owner": owner, "slug": slug, "want_suffix": want_suffix(want)}
        )
        row = result.first()
    if row is None:
        return None
    entry = None
    if row.cache_id is not None:
        entry = CacheEntry(
            row.cache_id,
            row.mpack_id,
            row.size_bytes,
            row.sha256,
            row.expires_at,
            last_hit_at=row.last_hit_at,
        )
    return CloneLookup(row.repo_id, row.owner, row.visibility, dict(row.heads), entry)
