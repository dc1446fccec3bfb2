"""PostgreSQL restarted while the API serves: requests during the outage get a 503 with a
message, never a hang or a 500, and the API recovers by itself once the database is back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from api.app import create_app
from musehub.db import migrate
from musehub.devstack.ports import free_port
from musehub.devstack.postgres import EmbeddedPostgres
from musehub.settings import Settings
from musehub.storage import LocalStorage
from musehub.temporal import LazyTemporalClient


@pytest.fixture
async def own_database(tmp_path: Path) -> AsyncIterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_path / "pg", port=free_port())
    server.start()
    engine = create_async_engine(server.url)
    await migrate.upgrade(engine)
    await engine.dispose()
    yield server
    server.stop()


async def test_api_answers_503_while_postgres_is_down_and_recovers(
    own_database: EmbeddedPostgres, hub_settings: Settings, tmp_path: Path
) -> None:
    engine = create_async_engine(
        own_database.url, pool_pre_ping=True, pool_timeout=5, connect_args={"timeout": 3}
    )
    storage = LocalStorage(tmp_path / "blobs", signing_key=b"k" * 32, public_base_url="http://t")
    app = create_app(
        hub_settings,
        engine=engine,
        object_storage=storage,
        temporal=LazyTemporalClient.disabled(hub_settings),
    )
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        assert (await client.get("/health")).status_code == 200
        assert (await client.get("/nobody/nothing/refs")).status_code == 404

        own_database.stop()
        health = await client.get("/health")
        assert health.status_code == 503
        refs = await client.get("/nobody/nothing/refs")
        assert refs.status_code == 503
        assert "database is unavailable" in refs.text

        own_database.start()
        assert (await client.get("/health")).status_code == 200
        assert (await client.get("/nobody/nothing/refs")).status_code == 404
    await engine.dispose()
