"""Alembic environment, async: runs on a connection handed in by `musehub.db.migrate`
(tests, `musehub dev`) or opens its own from the configured URL (the `alembic` CLI)."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from musehub.db.models import Base

config = context.config
target_metadata = Base.metadata


def _run_on(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_own_engine(url: str) -> None:
    engine = create_async_engine(url)
    async with engine.connect() as connection:
        await connection.run_sync(_run_on)
        await connection.commit()
    await engine.dispose()


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_on(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        from musehub.settings import get_settings

        url = get_settings().database.url
    if not url:
        raise SystemExit("musehub: set MUSEHUB_DATABASE_URL to run migrations with the alembic CLI")
    asyncio.run(_run_with_own_engine(url))


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
