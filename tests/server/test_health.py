"""Liveness and readiness: `/health/live` checks nothing, `/health/ready` names the part that
fails (database, storage, Temporal), `/health` answers as before."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from musehub.db.engine import create_engine
from musehub.devstack.ports import free_port
from musehub.settings import Settings
from musehub.storage import LocalStorage, ObjectStorage, StorageError, StoredObjectInfo
from musehub.temporal import LazyTemporalClient


class BrokenStorage(LocalStorage):
    """A bucket that cannot be listed (gone, or no rights to it)."""

    async def list(self, prefix: str = "") -> AsyncIterator[StoredObjectInfo]:
        raise StorageError("AccessDenied")
        yield  # an async generator, as the real backends


@asynccontextmanager
async def client_of(
    settings: Settings, engine: AsyncEngine, storage: ObjectStorage, temporal: LazyTemporalClient
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, engine=engine, object_storage=storage, temporal=temporal)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub.test") as client:
            yield client


KEY = b"health-tests-signing-key"


def local(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "blobs", signing_key=KEY, public_base_url="http://hub.test")


async def test_ready_when_every_part_answers(
    hub_settings: Settings,
    db_engine: AsyncEngine,
    temporal_env: WorkflowEnvironment,
    tmp_path: Path,
) -> None:
    temporal = LazyTemporalClient(hub_settings, client=temporal_env.client)
    async with client_of(hub_settings, db_engine, local(tmp_path), temporal) as c:
        ready = await c.get("/health/ready")
        assert (ready.status_code, ready.json()) == (
            200,
            {"status": "ok", "database": "ok", "storage": "ok", "temporal": "ok"},
        )
        assert (await c.get("/health/live")).json() == {"status": "ok"}
        assert (await c.get("/health")).json() == {"status": "ok", "database": "ok"}


async def test_not_ready_names_each_part_that_fails_while_still_live(
    hub_settings: Settings, tmp_path: Path
) -> None:
    nowhere = create_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/x")
    broken = BrokenStorage(tmp_path / "blobs", signing_key=KEY, public_base_url="http://x")
    temporal = LazyTemporalClient.disabled(hub_settings)  # never connects
    try:
        async with client_of(hub_settings, nowhere, broken, temporal) as c:
            ready = await c.get("/health/ready")
            live = await c.get("/health/live")
            old = await c.get("/health")
    finally:
        await nowhere.dispose()
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "unavailable"
    assert body["database"].startswith("unreachable: ")
    assert body["storage"] == "unreachable: StorageError"
    assert body["temporal"] == "unreachable: ConnectionError"
    assert (live.status_code, live.json()) == (200, {"status": "ok"})
    assert old.status_code == 503


async def test_only_the_failing_part_is_named(
    hub_settings: Settings, db_engine: AsyncEngine, tmp_path: Path
) -> None:
    temporal = LazyTemporalClient.disabled(hub_settings)
    async with client_of(hub_settings, db_engine, local(tmp_path), temporal) as c:
        ready = await c.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json() == {
        "status": "unavailable",
        "database": "ok",
        "storage": "ok",
        "temporal": "unreachable: ConnectionError",
    }
