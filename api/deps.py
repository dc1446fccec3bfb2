"""Request-scoped dependencies: one DB session per request, the shared storage and settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from musehub.settings import Settings
from musehub.storage import ObjectStorage


# async: FastAPI runs a plain `def` dependency in its thread pool, a hop per request.
async def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


async def get_storage(request: Request) -> ObjectStorage:
    return request.app.state.storage  # type: ignore[no-any-return]


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    factory: async_sessionmaker[AsyncSession] = request.app.state.session_factory
    async with factory() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
StorageDep = Annotated[ObjectStorage, Depends(get_storage)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
