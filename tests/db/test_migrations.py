"""FMC_03: every revision goes up and down on real PostgreSQL, and the models match the DDL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from musehub.db import migrate
from musehub.db.models import Base

_ALL_REVISIONS = migrate.all_revisions()
_HEAD = _ALL_REVISIONS[-1]
SCRATCH_DB = "musehub_migration_scratch"


@pytest.fixture
async def scratch_engine(db_engine: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    """A fresh, empty database, so up/down runs never touch the shared test schema."""
    admin = create_async_engine(db_engine.url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{SCRATCH_DB}"'))
        await conn.execute(text(f'CREATE DATABASE "{SCRATCH_DB}"'))
    engine = create_async_engine(db_engine.url.set(database=SCRATCH_DB))
    yield engine
    await engine.dispose()
    async with admin.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{SCRATCH_DB}" WITH (FORCE)'))
    await admin.dispose()


def _current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _tables(connection: Connection) -> set[str]:
    return {name for name in inspect(connection).get_table_names() if name != "alembic_version"}


def test_revisions_form_one_line() -> None:
    assert _ALL_REVISIONS[0] == "0001"
    assert len(set(_ALL_REVISIONS)) == len(_ALL_REVISIONS)


async def test_every_revision_up_and_down(scratch_engine: AsyncEngine) -> None:
    for revision in _ALL_REVISIONS:
        await migrate.upgrade(scratch_engine, revision)
        async with scratch_engine.connect() as conn:
            assert await conn.run_sync(_current_revision) == revision
    async with scratch_engine.connect() as conn:
        assert await conn.run_sync(_tables) == set(Base.metadata.tables)

    for index in range(len(_ALL_REVISIONS) - 1, -1, -1):
        target = _ALL_REVISIONS[index - 1] if index > 0 else "base"
        await migrate.downgrade(scratch_engine, target)
        async with scratch_engine.connect() as conn:
            expected = None if target == "base" else target
            assert await conn.run_sync(_current_revision) == expected
    async with scratch_engine.connect() as conn:
        assert await conn.run_sync(_tables) == set()

    await migrate.upgrade(scratch_engine, _HEAD)  # and back up again: downgrade left it clean


async def test_models_match_migrated_schema(db_engine: AsyncEngine) -> None:
    def diff(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    async with db_engine.connect() as conn:
        assert await conn.run_sync(diff) == []


async def test_mpack_cache_row_defaults_and_head_set_coexistence(db_engine: AsyncEngine) -> None:
    """FMC_01: expires_at defaults to now + 7 days; a head-set row (tip NULL) coexists with the
    single-tip rows; a second row for the same (repo, tip) is refused."""
    tip_a, tip_b = "a" * 64, "b" * 64
    async with db_engine.connect() as conn:
        tx = await conn.begin()
        await conn.execute(
            text("INSERT INTO musehub_repos (repo_id, owner, slug) VALUES ('r1', 'alice', 'song')")
        )
        insert = text(
            "INSERT INTO musehub_fetch_mpack_cache"
            " (cache_id, repo_id, tip_commit_id, mpack_id, size_bytes, sha256, want_commit_ids)"
            " VALUES (:cid, 'r1', :tip, 'mpacks/x', 1, :sha, :wants)"
        )
        await conn.execute(
            insert, {"cid": "1" * 64, "tip": tip_a, "sha": "0" * 64, "wants": [tip_a]}
        )
        await conn.execute(
            insert, {"cid": "2" * 64, "tip": tip_b, "sha": "0" * 64, "wants": [tip_b]}
        )
        await conn.execute(
            insert, {"cid": "3" * 64, "tip": None, "sha": "0" * 64, "wants": [tip_a, tip_b]}
        )
        ttl = await conn.scalar(
            text(
                "SELECT min(expires_at - created_at) FROM musehub_fetch_mpack_cache"
                " WHERE repo_id = 'r1'"  # other tests' rows share the table
            )
        )
        assert ttl.days == 7
        nested = await conn.begin_nested()
        with pytest.raises(Exception, match="uq_musehub_fetch_mpack_cache_repo_id_tip_commit_id"):
            await conn.execute(
                insert, {"cid": "4" * 64, "tip": tip_a, "sha": "0" * 64, "wants": [tip_a]}
            )
        await nested.rollback()
        nested = await conn.begin_nested()
        with pytest.raises(Exception, match="tip_or_head_set"):
            await conn.execute(
                insert, {"cid": "5" * 64, "tip": None, "sha": "0" * 64, "wants": [tip_a]}
            )
        await nested.rollback()
        await tx.rollback()
