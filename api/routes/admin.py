"""The operator API (JSON): create repositories and tokens, as `musehub repo create` and
`musehub token create` do. Switched off unless MUSEHUB_API_ADMIN_TOKEN is set."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from api.deps import SessionDep, SettingsDep
from musehub.services.errors import BadRequest, Forbidden, Unauthorized
from musehub.services.repos import create_repo
from musehub.services.tokens import check_user_name, create_token


async def require_operator(request: Request, settings: SettingsDep) -> None:
    expected = settings.api.admin_token
    if expected is None:
        raise Forbidden("the operator API is off: set MUSEHUB_API_ADMIN_TOKEN to switch it on")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), expected.get_secret_value().encode()
    ):
        raise Unauthorized(
            "the operator API needs 'Authorization: Bearer <MUSEHUB_API_ADMIN_TOKEN>'"
        )


router = APIRouter(prefix="/api", dependencies=[Depends(require_operator)])


class RepoCreate(BaseModel):
    owner: str
    slug: str
    private: bool = False
    domain: str = "code"


class RepoCreated(BaseModel):
    repo_id: str
    owner: str
    slug: str
    visibility: str
    domain: str
    default_branch: str


class TokenCreate(BaseModel):
    user: str = Field(min_length=1, max_length=64)


class TokenCreated(BaseModel):
    user: str
    token: str


@router.post("/repos", status_code=201)
async def create_repository(body: RepoCreate, session: SessionDep) -> RepoCreated:
    repo = await create_repo(
        session, body.owner, body.slug, private=body.private, domain=body.domain
    )
    await session.commit()
    return RepoCreated(
        repo_id=repo.repo_id,
        owner=repo.owner,
        slug=repo.slug,
        visibility=repo.visibility,
        domain=repo.domain,
        default_branch=repo.default_branch,
    )


@router.post("/tokens", status_code=201)
async def create_access_token(body: TokenCreate, session: SessionDep) -> TokenCreated:
    try:
        check_user_name(body.user)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    token = await create_token(session, body.user)
    await session.commit()
    return TokenCreated(user=body.user, token=token)
