"""Per test: fresh task queues, the API wired to Temporal (`temporal_env`, in tests/conftest.py),
and running workers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from musehub.services import mpack_cache
from musehub.settings import Settings
from musehub.temporal import LazyTemporalClient
from tests.conftest import Hub
from tests.hub_storage import HUB_URL, HubTransport
from worker import running_workers


def settings_with_fresh_queue(settings: Settings) -> Settings:
    """Task queues (and a GC schedule id) of this test's own, so tests never share workers."""
    unique = uuid.uuid4().hex[:8]
    temporal = settings.temporal.model_copy(
        update={
            "prebuild_task_queue": f"prebuild-test-{unique}",
            "task_queue": f"general-test-{unique}",
        }
    )
    gc = settings.gc.model_copy(update={"schedule_id": f"gc-test-{unique}"})
    # Deep, so a test that changes a group of its copy (storage, mpack) leaves the session's alone.
    return settings.model_copy(update={"temporal": temporal, "gc": gc}, deep=True)


@dataclass
class PrebuildHub(Hub):
    temporal: Client | None = None


@pytest.fixture
async def prebuild_hub(hub: Hub, temporal_env: WorkflowEnvironment) -> AsyncIterator[PrebuildHub]:
    """The API (push enqueues prebuilds) plus a worker, on a task queue of this test's own."""
    settings = settings_with_fresh_queue(hub.settings)
    app = create_app(
        settings,
        engine=hub.engine,
        object_storage=hub.storage,
        temporal=LazyTemporalClient(settings, client=temporal_env.client),
    )
    transport = HubTransport(app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url=HUB_URL) as client,
        running_workers(
            temporal_env.client,
            settings,
            storage=hub.storage,
            database_url=hub.engine.url.render_as_string(hide_password=False),
        ),
    ):
        yield PrebuildHub(
            app,
            client,
            settings,
            hub.storage,
            hub.engine,
            hub.backend,
            transport,
            temporal_env.client,
        )


async def named_objects_stored(hub: Hub, repo_id: str, want: list[str]) -> bool:
    """Whether every object the want set's row names (its one pack, its chain's parts) is in
    storage at its size."""
    async with AsyncSession(hub.engine) as session:
        entry = await mpack_cache.lookup(session, repo_id, want)
    assert entry is not None
    named = [(p.mpack_id, p.size) for p in entry.chain.parts] if entry.chain else []
    if entry.mpack_id is not None:
        named.append((entry.mpack_id, entry.size_bytes))
    return bool(named) and all([await hub.storage.size(k) == size for k, size in named])
