"""The async engine and session factory, built once per process from settings."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

# asyncpg prepares every statement; after a few runs PostgreSQL may switch a prepared statement
# to a generic plan, which for the history CTEs (array parameters of unknown size) can be
# quadratic: a 100k-commit push once sat minutes in one query. Plan with the real values.
SERVER_SETTINGS = {"plan_cache_mode": "force_custom_plan"}


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        # A restarted PostgreSQL costs no failed request: dead pooled connections are replaced.
        pool_pre_ping=True,
        connect_args={"server_settings": SERVER_SETTINGS},
    )


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
