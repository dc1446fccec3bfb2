"""The FastAPI app factory. The engine, storage backend and Temporal client are created in the
lifespan and closed there; tests can hand in their own."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import Receive, Scope, Send

from api.deps import AppParts, parts_of
from api.routes import admin, health, metrics, rebuild, storage, wire
from api.routes.fetch import fetch_path_params, fetch_route, fetch_shortcut
from api.wire_io import install_error_handlers
from musehub.db.engine import create_engine, session_factory
from musehub.logs import configure_logging
from musehub.metrics import process_started, process_stopped
from musehub.services.fetch import FetchMPacks
from musehub.services.refs_changes import RefsChanges
from musehub.settings import Settings, get_settings
from musehub.storage import ObjectStorage, build_storage
from musehub.temporal import LazyTemporalClient


def _exempt_startup_objects_from_gc() -> None:
    """Everything alive now (modules, routes, the engine) lives as long as the process, yet a
    full collection would walk all of it again: 60-80 ms with the loop stopped, twice a second
    per process at 3,000 answers/s, and that pause was the whole p99 at 64 connections (75 ms;
    22 ms once frozen). Collect the startup garbage, then freeze the rest out of the GC's walk."""
    gc.collect()
    gc.freeze()


class MuseHubApp(FastAPI):
    """FastAPI with one shortcut: `POST /{owner}/{slug}/fetch` goes straight to its endpoint,
    past the middleware stack and the router, which cost a warm clone answer more than its
    own work. The same endpoint is also an ordinary route, so the app behaves the same
    without the shortcut; errors on it get the app's own handlers either way."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            params = fetch_path_params(scope["path"])
            if params is not None:
                scope["app"] = self
                scope["path_params"] = params
                await fetch_shortcut(scope, receive, send, self.exception_handlers)
                return
        await super().__call__(scope, receive, send)


def create_app(
    settings: Settings | None = None,
    *,
    engine: AsyncEngine | None = None,
    object_storage: ObjectStorage | None = None,
    temporal: LazyTemporalClient | None = None,
) -> FastAPI:
    settings = settings or get_settings()
    configure_logging()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own_engine = engine is None
        app_engine = engine or create_engine(
            settings.database_url, pool_size=settings.database.pool_size
        )
        app_storage = object_storage or build_storage(settings)
        app.state.parts = AppParts(
            settings=settings,
            engine=app_engine,
            sessions=session_factory(app_engine),
            storage=app_storage,
            temporal=temporal or LazyTemporalClient(settings),
            fetch=FetchMPacks(app_engine, app_storage, settings),
        )
        fetch = app.state.parts.fetch
        # Forgets a repo's kept refs the moment they change, whichever process changed them.
        listening = asyncio.create_task(
            RefsChanges(app_engine, fetch.forget_repo, fetch.refs_listening).run()
        )
        _exempt_startup_objects_from_gc()
        process_started("api")
        try:
            yield
        finally:
            listening.cancel()
            await asyncio.gather(listening, return_exceptions=True)
            process_stopped("api")
            if object_storage is None:
                await parts_of(app).storage.aclose()
            if own_engine:
                await app_engine.dispose()

    otel = settings.api.opentelemetry
    app = MuseHubApp(
        title="MuseHub",
        lifespan=lifespan,
        redirect_slashes=False,
        telemetry={"tracing": otel, "metrics": otel, "logs": otel},
    )
    install_error_handlers(app)
    app.router.routes.insert(0, fetch_route())  # the hottest path is matched first
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(storage.router)
    app.include_router(admin.router)
    app.include_router(rebuild.router)
    app.include_router(wire.router)  # last: its /{owner}/{slug}/... paths catch the most
    return app
