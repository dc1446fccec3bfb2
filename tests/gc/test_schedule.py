"""The GC schedule, against a real Temporal dev server: created idempotently (and updated to
match the settings), and a trigger runs `GarbageCollectFetchMPacks` to completion on a worker,
which deletes, sweeps, reconciles and reports; a failed storage delete is retried in the run."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import ScheduleActionStartWorkflow, ScheduleOverlapPolicy
from temporalio.testing import WorkflowEnvironment

from musehub.contract import GC_WORKFLOW, GcInput, GcResult, prebuild_workflow_id
from musehub.db.models import Repo
from musehub.services.schedules import apply_gc_schedule, gc_result, trigger_gc
from musehub.settings import Settings
from tests.conftest import Hub
from tests.faults import FaultyStorage
from tests.gc.helpers import DAY, age, cache_row, new_repo_id, put_pack
from tests.prebuild.conftest import settings_with_fresh_queue
from tests.prebuild.test_prebuild_integration import wait_for_rows
from tests.wire.helpers import push_vector
from worker import running_workers
from workflows.gc import GarbageCollectFetchMPacks

FIRST_PUSH = datetime(2000, 1, 1, tzinfo=UTC)


def with_gc(settings: Settings, **gc: object) -> Settings:
    return settings.model_copy(update={"gc": settings.gc.model_copy(update=gc)})


async def make_oldest_push(hub: Hub, repo_id: str) -> None:
    """Reconcile takes the oldest pushes first: put this repo at the head of the line, before
    any repo an earlier test put there (on the other backend, whose packs this one's GC counts
    as lost, that repo would be reconciled instead)."""
    async with AsyncSession(hub.engine) as session:
        oldest = await session.scalar(select(func.min(Repo.pushed_at)))
        first = min(oldest or FIRST_PUSH, FIRST_PUSH) - timedelta(seconds=1)
        await session.execute(update(Repo).where(Repo.repo_id == repo_id).values(pushed_at=first))
        await session.commit()


async def test_schedule_is_applied_idempotently_and_a_trigger_runs_gc(
    hub: Hub, temporal_env: WorkflowEnvironment
) -> None:
    client = temporal_env.client
    settings = with_gc(settings_with_fresh_queue(hub.settings), reconcile_max_repos=1)
    assert (await apply_gc_schedule(client, settings)).created
    handle = client.get_schedule_handle(settings.gc.schedule_id)
    try:
        schedule = (await handle.describe()).schedule
        assert schedule.policy.overlap == ScheduleOverlapPolicy.SKIP
        assert isinstance(schedule.action, ScheduleActionStartWorkflow)
        assert schedule.action.workflow == GC_WORKFLOW
        assert schedule.action.task_queue == settings.temporal.task_queue
        assert schedule.spec.intervals[0].every == timedelta(minutes=settings.gc.interval_minutes)
        assert not (await apply_gc_schedule(client, with_gc(settings, interval_minutes=30))).created
        assert (await handle.describe()).schedule.spec.intervals[0].every == timedelta(minutes=30)

        repo_id = await new_repo_id(hub)
        expired = await put_pack(hub.storage, repo_id, b"expired pack")
        await cache_row(hub, repo_id, expired, expires_in=-timedelta(minutes=1))
        orphan = await put_pack(hub.storage, repo_id, b"orphan pack")
        age(hub.storage, orphan, 2 * DAY)
        unbuilt = (
            await push_vector(hub, branches=("main", "chorus"))
        ).repo_id  # pushed while "Temporal was down": no packs
        await make_oldest_push(hub, unbuilt)

        async with running_workers(
            client,
            settings,
            storage=hub.storage,
            database_url=hub.engine.url.render_as_string(False),
        ):
            workflow_id = await trigger_gc(client, settings)
            result = await gc_result(client, workflow_id)
            await wait_for_rows(hub, unbuilt, 3)  # the reconciled prebuild built every pack

        assert workflow_id.startswith(settings.gc.schedule_id)
        assert result.errors == []
        assert result.rows_deleted >= 1 and result.objects_deleted >= 1
        assert result.orphans_swept >= 1 and result.bytes_freed >= len(b"orphan pack")
        assert (result.repos_reconciled, result.tips_reconciled) == (1, 3)
        assert not await hub.storage.exists(expired) and not await hub.storage.exists(orphan)
        prebuild = await client.get_workflow_handle(prebuild_workflow_id(unbuilt)).describe()
        assert prebuild.task_queue == settings.temporal.prebuild_task_queue
    finally:
        await handle.delete()


async def test_a_failed_object_delete_is_retried_within_the_run(
    hub: Hub, temporal_env: WorkflowEnvironment
) -> None:
    settings = settings_with_fresh_queue(hub.settings)
    repo_id = await new_repo_id(hub)
    key = await put_pack(hub.storage, repo_id, b"pack whose first delete fails")
    await cache_row(hub, repo_id, key, expires_in=-timedelta(minutes=1))
    flaky = FaultyStorage(hub.storage, fail_deletes=1)

    async with running_workers(
        temporal_env.client,
        settings,
        storage=flaky,
        database_url=hub.engine.url.render_as_string(False),
    ):
        result = await temporal_env.client.execute_workflow(
            GarbageCollectFetchMPacks.run,
            GcInput(reconcile_max_repos=0),
            id=f"gc-test-{uuid.uuid4().hex[:8]}",
            task_queue=settings.temporal.task_queue,
        )
    assert isinstance(result, GcResult) and result.errors == []
    assert flaky.fail_deletes == 0  # the injected fault was hit ...
    assert result.objects_deleted >= 1 and not await hub.storage.exists(key)  # ... and retried
