"""A worker killed with SIGKILL in the middle of a build: another worker finishes the job,
exactly one pack object and one cache row come out of it, and the killed worker's staging
folder is gone as soon as the next worker starts."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from musehub.services.prebuild_trigger import request_prebuild
from musehub.services.staging import LOCK_FILE
from tests.conftest import Hub
from tests.hub_storage import storage_environment
from tests.mpack.helpers import VECTOR_HEADS, load_vector
from tests.prebuild.conftest import settings_with_fresh_queue
from tests.prebuild.test_prebuild_integration import wait_for_rows
from tests.wire.helpers import push_vector
from worker import running_workers

pytestmark = pytest.mark.local_storage_only("one host; tests/multihost kills a worker on S3")

VECTOR = load_vector()
MAIN = VECTOR_HEADS["main"]


def start_slow_worker(
    hub: Hub,
    env: WorkflowEnvironment,
    queue: str,
    log: Path,
    more_environment: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """A real worker process whose blob reads take 1.5 s each, one at a time."""
    environment = (
        dict(
            os.environ,
            MUSEHUB_DATABASE_URL=hub.engine.url.render_as_string(hide_password=False),
            MUSEHUB_TEMPORAL_ADDRESS=env.client.service_client.config.target_host,
            MUSEHUB_TEMPORAL_PREBUILD_TASK_QUEUE=queue,
        )
        | storage_environment(hub.settings)
        | {"MUSEHUB_STORAGE_READ_DELAY_MS": "1500", "MUSEHUB_STORAGE_READ_CONCURRENCY": "1"}
        | (more_environment or {})
    )
    return subprocess.Popen(
        [sys.executable, "-m", "worker"],
        env=environment,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


async def wait_until(predicate: object, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def test_build_survives_its_worker_being_killed(
    hub: Hub, temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    owner, slug, _token, repo_id = await push_vector(hub)
    settings = settings_with_fresh_queue(hub.settings)
    settings.temporal.worker_loss_seconds = 3.0
    staging_root = settings.work_dir / "prebuild"

    def build_folders() -> set[Path]:
        """Builds' folders, in the workers' folders."""
        return {p for p in staging_root.glob("worker-*/*") if p.name != LOCK_FILE}

    before = build_folders()

    log = tmp_path / "doomed-worker.log"
    doomed = start_slow_worker(hub, temporal_env, settings.temporal.prebuild_task_queue, log)
    try:
        await wait_until(lambda: b"worker polling" in log.read_bytes(), 30, "the worker to poll")
        await request_prebuild(
            temporal_env.client, settings, repo_id=repo_id, repo_name=f"{owner}/{slug}", tips=[MAIN]
        )
        await wait_until(
            lambda: build_folders() - before, 30, "the doomed worker to start loading blobs"
        )
        (doomed_build,) = build_folders() - before
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(10)
    finally:
        if doomed.poll() is None:
            doomed.kill()

    async with running_workers(
        temporal_env.client,
        settings,
        storage=hub.storage,
        database_url=hub.engine.url.render_as_string(False),
    ):
        assert not doomed_build.parent.exists()  # swept at start: its lock died with its worker
        rows = await wait_for_rows(hub, repo_id, 1, within=60)
    assert len(rows) == 1
    listed = [info async for info in hub.storage.list(f"mpacks/{repo_id}/")]
    packs = [p for p in listed if not p.key.endswith(".zst")]  # the zstd copy made after it
    assert [p.key for p in packs] == [rows[0].mpack_id]
    assert packs[0].size == rows[0].size_bytes
