"""`POST /api/repos/{owner}/{slug}/rebuild`: the repo owner asks for its packs to be rebuilt."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel

from api.auth import UserDep
from api.deps import SessionDep, SettingsDep
from musehub.services.errors import Unavailable
from musehub.services.rebuild import rebuild_packs
from musehub.services.repos import repo_for_push

router = APIRouter(prefix="/api/repos")


class RebuildAnswer(BaseModel):
    workflow_id: str
    tips: list[str]
    force: bool


@router.post("/{owner}/{slug}/rebuild", status_code=202)
async def rebuild(
    owner: str,
    slug: str,
    request: Request,
    session: SessionDep,
    user: UserDep,
    settings: SettingsDep,
    force: bool = False,
) -> RebuildAnswer:
    repo = await repo_for_push(session, owner, slug, user)
    client = await request.app.state.temporal.get()
    if client is None:
        raise Unavailable(
            "Temporal is unreachable right now, so no rebuild can start; try again soon"
        )
    started = await rebuild_packs(session, client, settings, repo, force=force)
    return RebuildAnswer(workflow_id=started.workflow_id, tips=started.tips, force=started.force)
