"""`musehub schedules apply`, `musehub gc --dry-run` and `musehub gc` as an operator runs them:
real processes, configured by environment variables, against the test database and Temporal."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import timedelta

from temporalio.testing import WorkflowEnvironment

from musehub.settings import Settings
from tests.conftest import Hub
from tests.gc.helpers import (
    DAY,
    age,
    cache_row,
    clear_what_other_tests_left,
    new_repo_id,
    put_pack,
)
from tests.hub_storage import storage_environment
from tests.prebuild.conftest import settings_with_fresh_queue
from worker import running_workers


async def musehub(hub: Hub, env: WorkflowEnvironment, settings: Settings, *args: str) -> str:
    environment = dict(
        os.environ,
        MUSEHUB_DATABASE_URL=hub.engine.url.render_as_string(hide_password=False),
        MUSEHUB_TEMPORAL_ADDRESS=env.client.service_client.config.target_host,
        MUSEHUB_TEMPORAL_TASK_QUEUE=settings.temporal.task_queue,
        MUSEHUB_GC_SCHEDULE_ID=settings.gc.schedule_id,
        MUSEHUB_GC_RECONCILE="false",
        **storage_environment(hub.settings),
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "musehub.cli.main",
        *args,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return out.decode()


async def test_apply_dry_run_and_run_from_the_command_line(
    hub: Hub, temporal_env: WorkflowEnvironment
) -> None:
    settings = settings_with_fresh_queue(hub.settings)
    await clear_what_other_tests_left(hub, grace=settings.orphan_grace)
    repo_id = await new_repo_id(hub)
    expired = await put_pack(hub.storage, repo_id, b"expired, for the CLI")
    await cache_row(hub, repo_id, expired, expires_in=-timedelta(minutes=1))
    orphan = await put_pack(hub.storage, repo_id, b"orphan, for the CLI")
    age(hub.storage, orphan, 2 * DAY)

    applied = await musehub(hub, temporal_env, settings, "schedules", "apply")
    assert f"schedule {settings.gc.schedule_id} created" in applied
    try:
        preview = await musehub(hub, temporal_env, settings, "gc", "--dry-run")
        assert "dry run" in preview and expired in preview and orphan in preview
        assert "reconcile is off" in preview
        assert await hub.storage.exists(expired) and await hub.storage.exists(orphan)

        async with running_workers(
            temporal_env.client,
            settings,
            storage=hub.storage,
            database_url=hub.engine.url.render_as_string(False),
        ):
            ran = await musehub(hub, temporal_env, settings, "gc")
        assert f"gc run {settings.gc.schedule_id}" in ran and "expired rows" in ran
        assert not await hub.storage.exists(expired) and not await hub.storage.exists(orphan)
    finally:
        await temporal_env.client.get_schedule_handle(settings.gc.schedule_id).delete()
