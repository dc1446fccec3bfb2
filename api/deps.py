"""Request-scoped dependencies, each built on the ones below it, as the FastAPI full-stack
template builds `CurrentUser` on `SessionDep`:

    AppParts  ->  Settings, Storage, Temporal, FetchMPacks, Session
    Session   ->  CurrentUser  ->  ReadableRepo  ->  PushableRepo

A route names what it needs (the readable repo, the storage) and receives it; `app.state` is
read here and nowhere else (`parts_of`). Every dependency is `async`: FastAPI runs a plain `def`
in its thread pool, a hop per request.

The request body is not a dependency: each route reads it with `read_msgpack_body` after its
repo dependency has run, so a stranger's body is never read before the token and the repo have
been checked on the headers (`api/wire_io.py`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.types import Scope

from musehub.db.models import Repo
from musehub.services.errors import Unauthorized
from musehub.services.fetch import FetchMPacks
from musehub.services.repos import repo_for_push, repo_for_read
from musehub.services.tokens import authenticate
from musehub.settings import Settings
from musehub.storage import ObjectStorage
from musehub.temporal import LazyTemporalClient


@dataclass(frozen=True)
class AppParts:
    """What the app's lifespan created, for the length of the process."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    storage: ObjectStorage
    temporal: LazyTemporalClient
    fetch: FetchMPacks


def parts_of(app: FastAPI) -> AppParts:
    parts: AppParts = app.state.parts
    return parts


def parts_in(scope: Scope) -> AppParts:
    """The same, for a plain ASGI endpoint (the /fetch hot path), which has only the scope."""
    return parts_of(scope["app"])


async def get_parts(request: Request) -> AppParts:
    return parts_of(request.app)


PartsDep = Annotated[AppParts, Depends(get_parts)]


async def get_settings(parts: PartsDep) -> Settings:
    return parts.settings


async def get_storage(parts: PartsDep) -> ObjectStorage:
    return parts.storage


async def get_temporal(parts: PartsDep) -> LazyTemporalClient:
    return parts.temporal


async def get_fetch(parts: PartsDep) -> FetchMPacks:
    return parts.fetch


async def get_session(parts: PartsDep) -> AsyncIterator[AsyncSession]:
    async with parts.sessions() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
StorageDep = Annotated[ObjectStorage, Depends(get_storage)]
TemporalDep = Annotated[LazyTemporalClient, Depends(get_temporal)]
FetchDep = Annotated[FetchMPacks, Depends(get_fetch)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]


async def user_of(authorization: str | None, session: AsyncSession) -> str | None:
    """Who an `Authorization: Bearer <token>` header names; None when there is no header."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be 'Bearer <token>'")
    user = await authenticate(session, token.strip())
    if user is None:
        raise Unauthorized("this token is not valid (mistyped, revoked or from another hub)")
    return user


async def get_current_user(request: Request, session: SessionDep) -> str | None:
    return await user_of(request.headers.get("authorization"), session)


CurrentUser = Annotated[str | None, Depends(get_current_user)]


async def get_readable_repo(owner: str, slug: str, session: SessionDep, user: CurrentUser) -> Repo:
    """The repo at /{owner}/{slug} if the caller may read it (a private repo they may not read
    is reported exactly like a missing one)."""
    return await repo_for_read(session, owner, slug, user)


async def get_pushable_repo(owner: str, slug: str, session: SessionDep, user: CurrentUser) -> Repo:
    """The repo at /{owner}/{slug} if the caller may push to it (its owner, with a token)."""
    return await repo_for_push(session, owner, slug, user)


ReadableRepo = Annotated[Repo, Depends(get_readable_repo)]
PushableRepo = Annotated[Repo, Depends(get_pushable_repo)]
