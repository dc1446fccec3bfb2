"""Run the Alembic migrations from code (musehub dev, tests) without an alembic.ini."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

import migrations

MIGRATIONS_DIR = Path(migrations.__file__).parent


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def all_revisions() -> list[str]:
    """Every revision id, oldest first."""
    script = ScriptDirectory.from_config(alembic_config())
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


async def upgrade(target: AsyncEngine | AsyncConnection, revision: str = "head") -> None:
    await _run(target, lambda config: command.upgrade(config, revision))


async def downgrade(target: AsyncEngine | AsyncConnection, revision: str) -> None:
    await _run(target, lambda config: command.downgrade(config, revision))


async def upgrade_url_to_head(url: str) -> None:
    """Migrate the database at `url` to the newest schema (musehub dev, musehub migrate)."""
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    try:
        await upgrade(engine, "head")
    finally:
        await engine.dispose()


async def _run(target: AsyncEngine | AsyncConnection, action: object) -> None:
    def on_connection(sync_connection: Connection) -> None:
        action(alembic_config(sync_connection))  # type: ignore[operator]

    if isinstance(target, AsyncConnection):
        await target.run_sync(on_connection)
        return
    async with target.begin() as connection:
        await connection.run_sync(on_connection)
