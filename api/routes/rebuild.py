"""`POST /api/repos/{owner}/{slug}/rebuild`: the repo owner asks for its packs to be rebuilt."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from api.deps import PushableRepo, SessionDep, SettingsDep, TemporalDep
from musehub.services.errors import Unavailable
from musehub.services.rebuild import rebuild_packs

router = APIRouter(prefix="/api/repos")


class RebuildAnswer(BaseModel):
    workflow_id: str
    tips: list[str]
    force: bool


@router.post("/{owner}/{slug}/rebuild", status_code=202)
async def rebuild(
    repo: PushableRepo,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
    force: bool = False,
) -> RebuildAnswer:
    client = await temporal.get()
    if client is None:
        raise Unavailable(
            "Temporal is unreachable right now, so no rebuild can start; try again soon"
        )
    started = await rebuild_packs(session, client, settings, repo, force=force)
    return RebuildAnswer(workflow_id=started.workflow_id, tips=started.tips, force=started.force)
