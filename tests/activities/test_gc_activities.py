"""The GC activities alone, in `ActivityEnvironment` (no Temporal server): a step that outlasts
the heartbeat interval keeps heartbeating, so the workflow's heartbeat timeout never kills a
long sweep of a big bucket (or a long check of live packs against a slow one)."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import ActivityEnvironment

from activities.common import HEARTBEAT_EVERY_SECONDS
from activities.gc import GcActivities
from musehub.contract import DeleteMPacksInput, SweepInput, VerifyPacksInput
from musehub.db.engine import session_factory
from musehub.storage import LatencyInjectingStorage, LocalStorage, StoredObjectInfo
from tests.conftest import Hub
from tests.gc.helpers import cache_row, new_repo_id, put_pack

pytestmark = pytest.mark.local_storage_only(
    "heartbeats; the steps run on a slow bucket of their own"
)

OBJECTS = 5
# Each object takes this long to list or stat: the step outlasts two heartbeat intervals.
PER_OBJECT_SECONDS = HEARTBEAT_EVERY_SECONDS / 2


class SlowBucket(LatencyInjectingStorage):
    """A bucket so big (here: so slow) that a sweep of it outlasts the heartbeat interval."""

    async def list(self, prefix: str = "") -> AsyncIterator[StoredObjectInfo]:
        async for info in self.inner.list(prefix):
            await asyncio.sleep(self.read_delay_seconds)
            yield info

    async def size(self, key: str) -> int | None:
        await asyncio.sleep(self.read_delay_seconds)
        return await self.inner.size(key)


async def slow_bucket(root: Path) -> tuple[SlowBucket, list[str]]:
    """OBJECTS pack objects and as many uploads, none old enough to be swept."""
    local = LocalStorage(root, signing_key=b"test-signing-key", public_base_url="http://hub.test")
    repo = uuid.uuid4().hex
    packs = [f"mpacks/{repo}/{n:064x}.mpack" for n in range(OBJECTS)]
    for key in [*packs, *(f"uploads/{repo}/{n}" for n in range(OBJECTS))]:
        await local.put(key, b"pack bytes")
    return SlowBucket(local, PER_OBJECT_SECONDS), packs


def long_step(gc: GcActivities, name: str, packs: list[str]) -> tuple[Callable[..., Any], object]:
    """The activity method and its input."""
    if name == "delete_unnamed_mpacks":
        return gc.delete_unnamed_mpacks, DeleteMPacksInput(packs)
    return getattr(gc, name), SweepInput(grace_seconds=0)


@pytest.mark.parametrize("name", ["sweep_orphans", "sweep_uploads", "delete_unnamed_mpacks"])
async def test_a_long_gc_step_heartbeats_while_it_runs(name: str, hub: Hub, tmp_path: Path) -> None:
    storage, packs = await slow_bucket(tmp_path / "bucket")
    gc = GcActivities(session_factory(hub.engine), storage, hub.settings, temporal=None)  # type: ignore[arg-type]
    beats: list[float] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: beats.append(time.monotonic())
    step, step_input = long_step(gc, name, packs)
    began = time.monotonic()
    await env.run(step, step_input)
    took = time.monotonic() - began
    assert took > 2 * HEARTBEAT_EVERY_SECONDS
    assert beats and beats[0] - began < HEARTBEAT_EVERY_SECONDS  # one as the step starts ...
    assert len(beats) >= 2  # ... and more while it runs
    gaps = itertools.pairwise([*beats, began + took])
    assert max(later - earlier for earlier, later in gaps) < 2 * HEARTBEAT_EVERY_SECONDS


async def test_the_verify_step_heartbeats_while_it_runs(hub: Hub) -> None:
    repo_id = await new_repo_id(hub)
    for n in range(OBJECTS):  # at least OBJECTS live rows, each pack slow to look up
        await cache_row(hub, repo_id, await put_pack(hub.storage, repo_id, f"pack {n}".encode()))
    storage = SlowBucket(hub.storage, PER_OBJECT_SECONDS)
    gc = GcActivities(session_factory(hub.engine), storage, hub.settings, temporal=None)  # type: ignore[arg-type]
    beats: list[float] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: beats.append(time.monotonic())
    began = time.monotonic()
    verified = await env.run(gc.verify_live_packs, VerifyPacksInput(OBJECTS))
    assert verified.checked == OBJECTS
    assert len(beats) >= 2 and beats[0] - began < HEARTBEAT_EVERY_SECONDS
    gaps = itertools.pairwise([*beats, time.monotonic()])
    assert max(later - earlier for earlier, later in gaps) < 2 * HEARTBEAT_EVERY_SECONDS
