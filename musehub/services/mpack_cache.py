"""`musehub_fetch_mpack_cache`: which prebuilt pack answers a clone of (repo, want set).

A row's key is `cache_id_for(repo_id, want set)`; `lookup_clone` finds the same row by the repo's
name and the want set itself, with the repo and its branch heads, in one statement."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, delete, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from musehub.db.models import FetchMPackCache, MPackChainLink
from musehub.services.chains import CHAIN_JSON, Chain, chain_from_json


def normalise_want(want: Iterable[str]) -> list[str]:
    """Clone sends every branch head, possibly repeated, in any order: one key for all of them."""
    return sorted(set(want))


def cache_id_for(repo_id: str, want: Iterable[str]) -> str:
    """sha256 over the repo and the normalised want set: the repo is part of the key, so one
    repo's entry can never answer for another."""
    return hashlib.sha256("\x00".join([repo_id, *normalise_want(want)]).encode()).hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    cache_id: str
    mpack_id: str | None  # the whole answer as one pack object, once made
    size_bytes: int  # of the whole answer as one pack
    sha256: str | None
    expires_at: datetime
    last_hit_at: datetime | None = None
    chain: Chain | None = None  # its parts; None for a row from before chains


# Room for clock skew between API hosts and the database when an expiry must outlast a URL.
EXPIRY_SLACK = timedelta(minutes=1)


async def lookup(session: AsyncSession, repo_id: str, want: Iterable[str]) -> CacheEntry | None:
    """The live entry for this want set, or None. One primary-key lookup."""
    row = await session.execute(
        select(
            FetchMPackCache.cache_id,
            FetchMPackCache.mpack_id,
            FetchMPackCache.size_bytes,
            FetchMPackCache.sha256,
            FetchMPackCache.expires_at,
            FetchMPackCache.last_hit_at,
            text(CHAIN_JSON.format(cache_id="musehub_fetch_mpack_cache.cache_id")),
        ).where(
            FetchMPackCache.cache_id == cache_id_for(repo_id, want),
            FetchMPackCache.expires_at > datetime.now(UTC),
        )
    )
    found = row.first()
    if found is None:
        return None
    cache_id, mpack_id, size_bytes, sha256, expires_at, last_hit_at, chain = found
    return CacheEntry(
        cache_id, mpack_id, size_bytes, sha256, expires_at, last_hit_at, chain_from_json(chain)
    )


# A warm clone must cost one round trip whatever the repo's size: an ORM session with
# BEGIN/COMMIT and three queries costs several, so this is one Core statement outside any
# transaction. The row is matched by its want set (stored normalised), as its key is made.
_CLONE_LOOKUP = text(
    """
SELECT r.repo_id, r.owner, r.visibility, r.domain, r.default_branch,
       c.cache_id, c.mpack_id, c.size_bytes, c.sha256, c.expires_at, c.last_hit_at,
       coalesce((SELECT json_object_agg(b.name, b.head_commit_id ORDER BY b.name)
                 FROM musehub_branches b WHERE b.repo_id = r.repo_id), '{}') AS heads,
       """
    + CHAIN_JSON.format(cache_id="c.cache_id")
    + """ AS chain
FROM musehub_repos r
LEFT JOIN musehub_fetch_mpack_cache c
  ON c.repo_id = r.repo_id
 AND c.want_commit_ids = CAST(:want AS varchar(64)[])
 AND c.expires_at > now()
WHERE r.owner = :owner AND r.slug = :slug
"""
)


@dataclass(frozen=True)
class CloneLookup:
    """What a clone needs to know: who may read the repo, its refs (what `GET /refs` says), and
    its live pack."""

    repo_id: str
    owner: str
    visibility: str
    domain: str
    default_branch: str
    branch_heads: dict[str, str]
    entry: CacheEntry | None  # None: no live pack answers this want set


async def lookup_clone(
    engine: AsyncEngine, owner: str, slug: str, want: Iterable[str]
) -> CloneLookup | None:
    """The repo, its live entry for this want set and its heads; None when no such repo."""
    async with engine.connect() as connection:
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
        result = await autocommit.execute(
            _CLONE_LOOKUP, {"owner": owner, "slug": slug, "want": normalise_want(want)}
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
            chain=chain_from_json(row.chain),
        )
    return CloneLookup(
        row.repo_id,
        row.owner,
        row.visibility,
        row.domain,
        row.default_branch,
        dict(row.heads),
        entry,
    )


async def lock_want_set(session: AsyncSession, repo_id: str, want: Iterable[str]) -> None:
    """Serialise builds of one want set across every process, until this transaction ends: a
    herd of cold clones builds once, the others wait and then find the entry."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
        {"key": "mpack/" + cache_id_for(repo_id, want)},
    )


async def try_lock_want_set(session: AsyncSession, repo_id: str, want: Iterable[str]) -> bool:
    """`lock_want_set` without waiting: False when another transaction holds it."""
    held = await session.scalar(
        text("SELECT pg_try_advisory_xact_lock(hashtextextended(:key, 0))"),
        {"key": "mpack/" + cache_id_for(repo_id, want)},
    )
    return bool(held)


async def extend_on_hit(
    session: AsyncSession,
    entry: CacheEntry,
    *,
    ttl: timedelta,
    presign_ttl: timedelta,
    throttle: timedelta,
) -> CacheEntry | None:
    """Sliding expiry: a hit pushes the entry's expiry to `ttl` from now, so packs people clone
    stay and packs nobody clones expire. At most one write per `throttle`, except that the
    expiry always ends up past this hit's presigned URL: a pack being served is never collected.
    None when GC deleted the entry since `lookup` (serve it as a miss); the caller commits."""
    now = datetime.now(UTC)
    must_outlive = now + presign_ttl + EXPIRY_SLACK
    throttled = entry.last_hit_at is not None and now - entry.last_hit_at < throttle
    if throttled and entry.expires_at > must_outlive:
        return entry
    expires_at = max(now + ttl, must_outlive)
    extended = await session.execute(
        update(FetchMPackCache)
        .where(FetchMPackCache.cache_id == entry.cache_id, FetchMPackCache.expires_at > now)
        .values(last_hit_at=now, expires_at=func.greatest(FetchMPackCache.expires_at, expires_at))
        .returning(FetchMPackCache.expires_at)
        .execution_options(synchronize_session=False)
    )
    new_expiry = extended.scalar_one_or_none()
    if new_expiry is None:
        return None
    return replace(entry, expires_at=new_expiry, last_hit_at=now)


# The first free slot of `slots`, taken until the transaction ends; NULL when all are taken.
_TAKE_SLOT = text(
    """
SELECT (SELECT s FROM generate_series(0, :slots - 1) AS s
        WHERE pg_try_advisory_xact_lock(hashtext(:key), s) LIMIT 1)
"""
)


async def take_build_slot(session: AsyncSession, key: str, slots: int) -> bool:
    """One of `slots` build slots named `key`, held until this transaction ends, across every
    process that shares the database; False when all are taken (the caller refuses)."""
    slot = await session.scalar(_TAKE_SLOT, {"key": key, "slots": slots})
    return slot is not None


def naming(mpack_id: str) -> ColumnElement[bool]:
    """Rows that name the pack object `mpack_id`: as their one-pack object, or as a part of
    their chain."""
    linked = select(MPackChainLink.cache_id).where(MPackChainLink.mpack_id == mpack_id)
    return or_(FetchMPackCache.mpack_id == mpack_id, FetchMPackCache.cache_id.in_(linked))


async def drop_lost_pack(session: AsyncSession, repo_id: str, mpack_id: str) -> int:
    """Delete the rows that name a pack object storage no longer holds (their chain links go
    with them); the caller commits."""
    result = await session.execute(
        delete(FetchMPackCache)
        .where(FetchMPackCache.repo_id == repo_id, naming(mpack_id))
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def hold_mpack_object(session: AsyncSession, mpack_id: str) -> None:
    """Until this transaction ends, GC cannot delete the pack object `mpack_id`: it deletes an
    object only under this same lock, after checking that no row names it. Take it before
    uploading a pack (or before checking an uploaded one is still there) and keep it until the
    row naming the pack is committed."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
        {"key": "mpack-object/" + mpack_id},
    )


async def try_hold_mpack_object(session: AsyncSession, mpack_id: str) -> bool:
    """`hold_mpack_object` without waiting: False when another transaction holds it."""
    held = await session.scalar(
        text("SELECT pg_try_advisory_xact_lock(hashtextextended(:key, 0))"),
        {"key": "mpack-object/" + mpack_id},
    )
    return bool(held)


async def record(
    session: AsyncSession,
    *,
    repo_id: str,
    want: Iterable[str],
    mpack_id: str,
    size_bytes: int,
    sha256: str,
    commit_count: int,
    object_count: int,
    ttl: timedelta,
) -> CacheEntry:
    """Insert or refresh the entry for (repo, want set) as one pack, with no chain (a pack built
    by code from before chains, whose spans are unknown); the caller commits."""
    now = datetime.now(UTC)
    values = {
        "mpack_id": mpack_id,
        "size_bytes": size_bytes,
        "sha256": sha256,
        "commit_count": commit_count,
        "object_count": object_count,
        "created_at": now,
        "expires_at": now + ttl,
    }
    cache_id = await _upsert_row(session, repo_id, want, values)
    return CacheEntry(cache_id, mpack_id, size_bytes, sha256, now + ttl)


async def record_chain(
    session: AsyncSession,
    *,
    repo_id: str,
    want: Iterable[str],
    chain: Chain,
    ttl: timedelta,
) -> str:
    """Insert or replace the cache row of (repo, want set) as `chain` (its parts recorded
    already); a one-part chain is also its one-pack object. The caller commits."""
    now = datetime.now(UTC)
    single = chain.parts[0] if len(chain.parts) == 1 else None
    values = {
        "mpack_id": single.mpack_id if single else None,
        "sha256": single.sha256 if single else None,
        "size_bytes": chain.joined_size,
        "commit_count": chain.commit_count,
        "object_count": chain.object_count,
        "created_at": now,
        "expires_at": now + ttl,
    }
    cache_id = await _upsert_row(session, repo_id, want, values)
    await replace_links(session, cache_id, chain)
    return cache_id


async def _upsert_row(
    session: AsyncSession, repo_id: str, want: Iterable[str], values: Mapping[str, object]
) -> str:
    wants = normalise_want(want)
    cache_id = cache_id_for(repo_id, wants)
    values = {**values, "recorded_at": func.now()}  # the database's clock: see the model
    await session.execute(
        insert(FetchMPackCache)
        .values(
            cache_id=cache_id,
            repo_id=repo_id,
            want_commit_ids=wants,
            tip_commit_id=wants[0] if len(wants) == 1 else None,
            **values,
        )
        .on_conflict_do_update(index_elements=[FetchMPackCache.cache_id], set_=values)
    )
    return cache_id


async def replace_links(session: AsyncSession, cache_id: str, chain: Chain) -> None:
    """Make `chain` the row's chain (its parts recorded already); the caller commits."""
    await session.execute(delete(MPackChainLink).where(MPackChainLink.cache_id == cache_id))
    await session.execute(
        insert(MPackChainLink),
        [
            {
                "cache_id": cache_id,
                "position": position,
                "mpack_id": part.mpack_id,
                "want_commit_ids": list(part.want),
            }
            for position, part in enumerate(chain.parts)
        ],
    )


async def record_joined(
    session: AsyncSession, repo_id: str, want: Iterable[str], mpack_id: str, sha256: str
) -> None:
    """Record the one-pack object made of a row's chain (its size is the row's already); the
    caller holds the object's lock and commits."""
    await session.execute(
        update(FetchMPackCache)
        .where(FetchMPackCache.cache_id == cache_id_for(repo_id, want))
        .values(mpack_id=mpack_id, sha256=sha256)
        .execution_options(synchronize_session=False)
    )
