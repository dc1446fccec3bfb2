"""Health, as orchestrators ask for it.

- `GET /health/live`: 200 while the process serves requests; it checks nothing else, so a
  database outage never gets healthy API processes restarted.
- `GET /health/ready`: the database, object storage and Temporal, each checked at once with a
  short timeout; 503 names the part that failed. Take the process out of rotation on it.
- `GET /health`: the original check (200 once the database answers), kept for its callers
  (`musehub dev`, the benchmarks, load balancers already set up)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from contextlib import aclosing

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest

from api.deps import PartsDep, SessionDep
from musehub.storage import ObjectStorage
from musehub.temporal import LazyTemporalClient

# Each part's answer must come within this; an orchestrator's probe timeout should be longer.
READY_CHECK_SECONDS = 2.0
# A prefix no object has: listing it is one cheap request that needs the bucket and the rights.
STORAGE_PROBE_PREFIX = "musehub-readiness-probe/"

router = APIRouter()


@router.get("/health")
async def health(session: SessionDep) -> JSONResponse:
    try:
        await session.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError) as exc:
        return JSONResponse(
            {"status": "unavailable", "database": f"unreachable: {type(exc).__name__}"},
            status_code=503,
        )
    return JSONResponse({"status": "ok", "database": "ok"})


@router.get("/health/live")
async def live() -> JSONResponse:
    return JSONResponse({"status": "ok"})


@router.get("/health/ready")
async def ready(parts: PartsDep) -> JSONResponse:
    database, storage, temporal = await asyncio.gather(
        _check(_database(parts.engine)),
        _check(_storage(parts.storage)),
        _check(_temporal(parts.temporal)),
    )
    report = {"database": database, "storage": storage, "temporal": temporal}
    ok = all(state == "ok" for state in report.values())
    return JSONResponse(
        {"status": "ok" if ok else "unavailable", **report}, status_code=200 if ok else 503
    )


async def _check(probe: Awaitable[None]) -> str:
    """ "ok", or what went wrong in a few words."""
    try:
        async with asyncio.timeout(READY_CHECK_SECONDS):
            await probe
    except TimeoutError:
        return f"unreachable: no answer within {READY_CHECK_SECONDS:g} s"
    except Exception as exc:  # any failure means "not ready"; its type says which kind
        return f"unreachable: {type(exc).__name__}"
    return "ok"


async def _database(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


async def _storage(storage: ObjectStorage) -> None:
    # Every backend's `list` is an async generator; closing it ends its request at once.
    async with aclosing(storage.list(STORAGE_PROBE_PREFIX)) as objects:  # type: ignore[type-var]
        async for _ in objects:
            break


async def _temporal(temporal: LazyTemporalClient) -> None:
    client = await temporal.get()
    if client is None:
        raise ConnectionError("no connection to Temporal")
    await client.workflow_service.get_system_info(GetSystemInfoRequest())
