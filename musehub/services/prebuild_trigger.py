"""Start (or signal) a repo's prebuild workflow: after every push, and for a manual rebuild.

Signal-with-start on the one workflow id per repo: a running prebuild just gets the newest tips,
an idle repo gets a new run. Workflows are named by string (`musehub.contract`), so the
API never imports workflow code."""

from __future__ import annotations

import asyncio
import logging

from temporalio.client import Client
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

from musehub.contract import (
    PREBUILD_WORKFLOW,
    TIPS_PUSHED_SIGNAL,
    PrebuildInput,
    PrebuildRequest,
    PrebuildSignal,
    prebuild_workflow_id,
)
from musehub.settings import Settings
from musehub.temporal import LazyTemporalClient

log = logging.getLogger("musehub.prebuild")

REPO_NAME_ATTRIBUTE = SearchAttributeKey.for_keyword("MusehubRepo")
REPO_ID_ATTRIBUTE = SearchAttributeKey.for_keyword("MusehubRepoId")


async def request_prebuild(
    client: Client,
    settings: Settings,
    *,
    repo_id: str,
    repo_name: str,
    tips: list[str],
    force: bool = False,
    signal: PrebuildSignal = TIPS_PUSHED_SIGNAL,
) -> str:
    """Signal-with-start the repo's prebuild; returns the workflow id."""
    workflow_id = prebuild_workflow_id(repo_id)
    attributes = None
    if settings.temporal.search_attributes:
        attributes = TypedSearchAttributes(
            [
                SearchAttributePair(REPO_NAME_ATTRIBUTE, repo_name),
                SearchAttributePair(REPO_ID_ATTRIBUTE, repo_id),
            ]
        )
    await client.start_workflow(
        PREBUILD_WORKFLOW,
        PrebuildInput(
            repo_id=repo_id,
            repo_name=repo_name,
            worker_loss_seconds=settings.temporal.worker_loss_seconds,
        ),
        id=workflow_id,
        task_queue=settings.temporal.prebuild_task_queue,
        start_signal=signal,
        start_signal_args=[PrebuildRequest(sorted(set(tips)), force)],
        memo={"repo": repo_name, "repo_id": repo_id},
        search_attributes=attributes,
    )
    return workflow_id


async def prebuild_after_push(
    temporal: LazyTemporalClient,
    settings: Settings,
    *,
    repo_id: str,
    repo_name: str,
    tips: list[str],
    wait_seconds: float = 3.0,
) -> bool:
    """Best effort: a push has already succeeded, so a Temporal outage is logged, not raised
    (the periodic reconcile starts the prebuild later)."""
    try:
        client = await temporal.get()
        if client is None:
            raise ConnectionError("no connection")
        await asyncio.wait_for(
            request_prebuild(client, settings, repo_id=repo_id, repo_name=repo_name, tips=tips),
            wait_seconds,
        )
    except Exception as exc:  # any failure here must not fail the push
        log.warning(
            "prebuild not enqueued for %s (%s): %s; reconcile will catch up",
            repo_name,
            repo_id,
            exc,
        )
        return False
    return True
