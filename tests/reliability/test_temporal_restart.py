"""The Temporal dev server restarted in the middle of a prebuild (it keeps its state file): the
workflow resumes where it was and finishes, and the worker reconnects by itself."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from temporalio.client import Client

from musehub.devstack.ports import free_port
from musehub.devstack.temporal import TemporalDevServer
from musehub.services.prebuild_trigger import request_prebuild
from musehub.storage import LatencyInjectingStorage
from tests.conftest import Hub
from tests.mpack.helpers import VECTOR_HEADS, load_vector
from tests.prebuild.conftest import named_objects_stored, settings_with_fresh_queue
from tests.prebuild.test_prebuild_integration import wait_for_rows
from tests.wire.helpers import push_vector
from worker import running_workers

pytestmark = pytest.mark.local_storage_only("Temporal restarting; 13 s, storage plays no part")

VECTOR = load_vector()
MAIN = VECTOR_HEADS["main"]


async def test_prebuild_finishes_across_a_temporal_restart(hub: Hub, tmp_path: Path) -> None:
    server = TemporalDevServer(tmp_path / "temporal.db", port=free_port(), ui_port=None)
    server.start()
    try:
        client = await Client.connect(server.address)
        owner, slug, _token, repo_id = await push_vector(hub)
        settings = settings_with_fresh_queue(hub.settings)
        settings.temporal.worker_loss_seconds = 3.0
        settings.storage.read_concurrency = 1
        slow = LatencyInjectingStorage(hub.storage, 0.4)  # ~3 s of blob reads: time to restart
        staging = settings.work_dir / "prebuild"
        before = set(staging.iterdir()) if staging.exists() else set()

        async with running_workers(
            client, settings, storage=slow, database_url=hub.engine.url.render_as_string(False)
        ):
            await request_prebuild(
                client, settings, repo_id=repo_id, repo_name=f"{owner}/{slug}", tips=[MAIN]
            )
            deadline = time.monotonic() + 30
            while not (staging.exists() and set(staging.iterdir()) - before):
                assert time.monotonic() < deadline, "the build never started"
                await asyncio.sleep(0.05)
            server.stop()
            await asyncio.sleep(1)
            server.start()
            rows = await wait_for_rows(hub, repo_id, 1, within=90)
        assert rows[0].tip_commit_id == MAIN
        assert await named_objects_stored(hub, repo_id, [MAIN])
    finally:
        server.stop()
