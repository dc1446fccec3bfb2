"""A manual rebuild of a repo's prebuilt packs: the current branch tips, sent to the repo's
prebuild workflow as a `rebuild` signal (signal-with-start)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from musehub.contract import REBUILD_SIGNAL
from musehub.db.models import Repo
from musehub.services.errors import BadRequest
from musehub.services.prebuild_trigger import request_prebuild
from musehub.services.repos import branch_heads
from musehub.settings import Settings


@dataclass(frozen=True)
class RebuildStarted:
    workflow_id: str
    tips: list[str]
    force: bool


async def rebuild_packs(
    session: AsyncSession, client: Client, settings: Settings, repo: Repo, *, force: bool
) -> RebuildStarted:
    heads = await branch_heads(session, repo.repo_id)
    if not heads:
        raise BadRequest(f"{repo.owner}/{repo.slug} has no branches yet: push first")
    tips = sorted(set(heads.values()))
    workflow_id = await request_prebuild(
        client,
        settings,
        repo_id=repo.repo_id,
        repo_name=f"{repo.owner}/{repo.slug}",
        tips=tips,
        force=force,
        signal=REBUILD_SIGNAL,
    )
    return RebuildStarted(workflow_id, tips, force)
