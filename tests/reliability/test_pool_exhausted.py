"""Every pooled database connection busy (PostgreSQL stalled, a burst of slow queries): the
pool's wait times out, and the client gets 503 with Retry-After like any database outage,
never a 500."""

from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from api.app import create_app
from musehub.settings import Settings
from musehub.storage import LocalStorage
from musehub.temporal import LazyTemporalClient


async def test_a_pool_timeout_is_503_with_retry_after(
    db_engine: AsyncEngine, hub_settings: Settings, tmp_path: object
) -> None:
    url = db_engine.url.render_as_string(hide_password=False)
    engine = create_async_engine(url, pool_size=1, max_overflow=0, pool_timeout=0.5)
    storage = LocalStorage(
        hub_settings.blobs_root, signing_key=b"k" * 32, public_base_url="http://t"
    )
    app = create_app(
        hub_settings,
        engine=engine,
        object_storage=storage,
        temporal=LazyTemporalClient.disabled(hub_settings),
    )
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://t"
            ) as client,
        ):
            async with engine.connect() as held:  # the pool's only connection
                await held.exec_driver_sql("SELECT 1")
                refs = await client.get("/nobody/nothing/refs")
                fetch = await client.post(
                    "/nobody/nothing/fetch",
                    content=b"\x81\xa4want\x91\xd9\x40" + b"a" * 64,
                    headers={"Content-Type": "application/x-msgpack"},
                )
            for response in (refs, fetch):
                assert response.status_code == 503, response.text
                assert response.headers["retry-after"] == "5"
                assert "database is unavailable" in response.text
            assert (await client.get("/nobody/nothing/refs")).status_code == 404  # recovered
    finally:
        await engine.dispose()
