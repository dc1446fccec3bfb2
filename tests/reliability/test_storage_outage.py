"""Object storage failing: a fetch miss answers a clear 503 (not a truncated body) and writes no
cache row; once storage is back the same fetch succeeds and is cached."""

from __future__ import annotations

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.app import create_app
from musehub.db.models import FetchMPackCache
from musehub.temporal import LazyTemporalClient
from tests.conftest import Hub
from tests.faults import FaultyStorage
from tests.mpack.helpers import VECTOR_HEADS, load_vector
from tests.wire.helpers import call, push_vector

VECTOR = load_vector()
MAIN = VECTOR_HEADS["main"]


async def test_fetch_miss_with_failing_storage_is_a_clean_503(hub: Hub) -> None:
    owner, slug, _token, repo_id = await push_vector(hub)
    failing = FaultyStorage(hub.storage, fail_reads=10_000)
    app = create_app(
        hub.settings,
        engine=hub.engine,
        object_storage=failing,
        temporal=LazyTemporalClient.disabled(hub.settings),
    )
    body = {"want": [MAIN], "have": []}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://hub.test"
        ) as client,
    ):
        response = await call(client, owner, slug, "fetch", body)
        assert response.status_code == 503
        assert "object storage is failing" in response.text
        async with AsyncSession(hub.engine) as session:
            rows = await session.scalar(
                select(func.count())
                .select_from(FetchMPackCache)
                .where(FetchMPackCache.repo_id == repo_id)
            )
        assert rows == 0

        failing.fail_reads = 0
        healthy = await call(client, owner, slug, "fetch", body)
        assert healthy.status_code == 200
        assert healthy.headers["x-musehub-cache"] == "MISS"
        assert len(healthy.content) == int(healthy.headers["content-length"])
