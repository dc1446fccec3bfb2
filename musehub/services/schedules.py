"""The Temporal Schedule that runs garbage collection (`GarbageCollectFetchMPacks`) every
`MUSEHUB_GC_INTERVAL_MINUTES`: created or brought up to date by every worker at start and by
`musehub schedules apply`, and triggered at once by `musehub gc`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionExecution,
    ScheduleActionExecutionStartWorkflow,
    ScheduleActionResult,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleHandle,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from musehub.contract import GC_WORKFLOW, GcInput, GcResult
from musehub.settings import Settings

# With overlap "skip", a stuck run would hold back every later one; this ends it.
GC_RUN_TIMEOUT = timedelta(hours=2)


@dataclass(frozen=True)
class ScheduleApplied:
    schedule_id: str
    created: bool


def gc_input(settings: Settings) -> GcInput:
    gc = settings.gc
    return GcInput(
        batch_size=gc.batch_size,
        orphan_grace_seconds=settings.orphan_grace.total_seconds(),
        reconcile_max_repos=gc.reconcile_max_repos if gc.reconcile else 0,
        verify_max_packs=gc.verify_max_packs,
    )


def gc_schedule(settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            GC_WORKFLOW,
            gc_input(settings),
            id=settings.gc.schedule_id,
            task_queue=settings.temporal.task_queue,
            execution_timeout=GC_RUN_TIMEOUT,
        ),
        spec=ScheduleSpec(
            intervals=[
                ScheduleIntervalSpec(every=timedelta(minutes=settings.gc.interval_minutes)),
            ]
        ),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
        state=ScheduleState(note="MuseHub: collect expired fetch mpacks, reconcile missing ones"),
    )


async def apply_gc_schedule(client: Client, settings: Settings) -> ScheduleApplied:
    """Create the GC schedule, or update it to match the settings: safe to call from every
    worker at once. A pause set by an operator is kept."""
    schedule_id = settings.gc.schedule_id
    try:
        await client.create_schedule(schedule_id, gc_schedule(settings))
        return ScheduleApplied(schedule_id, created=True)
    except ScheduleAlreadyRunningError:
        pass

    def update(current: ScheduleUpdateInput) -> ScheduleUpdate:
        schedule = gc_schedule(settings)
        schedule.state = current.description.schedule.state
        return ScheduleUpdate(schedule=schedule)

    await client.get_schedule_handle(schedule_id).update(update)
    return ScheduleApplied(schedule_id, created=False)


async def trigger_gc(
    client: Client, settings: Settings, *, start_wait_seconds: float = 30.0
) -> str:
    """Trigger the GC schedule; returns the id of the run it started. When a run is already
    going (overlap: skip), returns that one's id instead."""
    return await _started_run(
        client.get_schedule_handle(settings.gc.schedule_id), start_wait_seconds
    )


async def gc_result(client: Client, workflow_id: str) -> GcResult:
    return await client.get_workflow_handle(workflow_id, result_type=GcResult).result()


async def _started_run(handle: ScheduleHandle, wait_seconds: float) -> str:
    description = await handle.describe()
    running = _run_ids(description.info.running_actions)
    if running:
        return sorted(running)[0]
    before = _run_ids(description.info.recent_actions)
    await handle.trigger()
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        info = (await handle.describe()).info
        started = _run_ids([*info.running_actions, *info.recent_actions]) - before
        if started:
            return started.pop()
        await asyncio.sleep(0.2)
    raise RuntimeError(
        f"schedule {handle.id} was triggered but started no run within {wait_seconds:g}s"
    )


def _run_ids(actions: Sequence[ScheduleActionExecution | ScheduleActionResult]) -> set[str]:
    """Workflow ids of running actions or of recent action results."""
    executions = [a.action if isinstance(a, ScheduleActionResult) else a for a in actions]
    return {
        e.workflow_id for e in executions if isinstance(e, ScheduleActionExecutionStartWorkflow)
    }
