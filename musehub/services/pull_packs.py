"""Packs built for pulls no chain answers, shared across API processes for a minute.

A pull whose `have` holds no position of the want set's chain is built on demand (UNCACHED).
Identical pulls at once (CI runners at the same commit after a push to another branch) are one
build: within a process they join the build in flight (`sync_builds.SyncBuilds`); across
processes the builder holds an advisory lock on the pull's key, and whoever waited for it finds
the pack here. The key is the repo, the want set and the commits of `have` the repo holds,
sorted: a client's unpushed commits change nothing in the pack, so they do not tell two pulls
apart.

No cache row names these packs: they go with the orphan sweep, whose grace (an hour) outlasts a
row's reuse many times over, and a row is used only while its object is still stored whole."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from musehub.db.models import PullPack
from musehub.services.mpack_build import BuiltMPack
from musehub.settings import Settings

REUSE_SECONDS = 60


@dataclass(frozen=True)
class SharedPull:
    mpack_id: str
    size: int
    sha256: str


def pull_key(repo_id: str, want: Sequence[str], known_have: Sequence[str]) -> str:
    """The pull's key: its repo, want set and the sorted commits of `have` the repo holds."""
    parts = [repo_id, *sorted(set(want)), "", *sorted(set(known_have))]
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


async def try_lock(session: AsyncSession, key: str) -> bool:
    """The pull's build lock until the transaction ends; False when another holds it."""
    held = await session.scalar(
        text("SELECT pg_try_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": "pull/" + key}
    )
    return bool(held)


async def lock(session: AsyncSession, key: str) -> None:
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": "pull/" + key}
    )


def reuse_for(settings: Settings) -> timedelta:
    """How long a pull's pack is handed out again: `REUSE_SECONDS`, or less when the orphan
    sweep's grace is so short that a URL handed out at the end of it could outlive the pack."""
    return min(timedelta(seconds=REUSE_SECONDS), settings.orphan_grace - settings.presign_ttl)


async def recent(session: AsyncSession, key: str, within: timedelta) -> SharedPull | None:
    """The pack built for this pull in the last `within`, if any."""
    row = (
        await session.execute(
            select(PullPack.mpack_id, PullPack.size_bytes, PullPack.sha256).where(
                PullPack.pull_key == key, PullPack.built_at > func.now() - within
            )
        )
    ).one_or_none()
    return None if row is None else SharedPull(row.mpack_id, row.size_bytes, row.sha256)


async def record(session: AsyncSession, key: str, repo_id: str, built: BuiltMPack) -> None:
    """Share the pack just built for this pull; rows past their reuse go at the same time (the
    table holds about a minute of distinct uncached pulls)."""
    stale = func.now() - timedelta(seconds=REUSE_SECONDS)
    await session.execute(delete(PullPack).where(PullPack.built_at < stale))
    values = {
        "mpack_id": built.key,
        "size_bytes": built.digest.size,
        "sha256": built.digest.sha256,
        "built_at": func.now(),
    }
    await session.execute(
        insert(PullPack)
        .values(pull_key=key, repo_id=repo_id, **values)
        .on_conflict_do_update(index_elements=[PullPack.pull_key], set_=values)
    )
