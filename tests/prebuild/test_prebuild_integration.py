"""FMC_08 / FMC_18: a push makes a cache row for every branch tip (and the head set) appear
shortly after, with no manual step; a clone right after is a HIT; the rebuild signal rebuilds."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.testing import WorkflowEnvironment

from api.deps import parts_of
from musehub.contract import (
    REBUILD_SIGNAL,
    STATUS_QUERY,
    PrebuildStatus,
    prebuild_workflow_id,
)
from musehub.db.models import FetchMPackCache
from musehub.services.prebuild_trigger import request_prebuild
from musehub.settings import load_settings
from musehub.temporal import LazyTemporalClient
from tests.conftest import Hub
from tests.faults import FaultyStorage
from tests.mpack.helpers import VECTOR_HEADS, load_vector
from tests.prebuild.conftest import PrebuildHub, named_objects_stored, settings_with_fresh_queue
from tests.wire.helpers import call, decode, push_records, push_vector
from worker import running_workers

VECTOR = load_vector()
MAIN, CHORUS = VECTOR_HEADS["main"], VECTOR_HEADS["chorus"]
BOTH = ("main", "chorus")


async def cache_rows(hub: Hub, repo_id: str) -> list[FetchMPackCache]:
    async with AsyncSession(hub.engine) as session:
        result = await session.scalars(
            select(FetchMPackCache).where(FetchMPackCache.repo_id == repo_id)
        )
        return list(result)


async def wait_for_rows(
    hub: Hub, repo_id: str, count: int, within: float = 30
) -> list[FetchMPackCache]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        rows = await cache_rows(hub, repo_id)
        if len(rows) >= count:
            return rows
        await asyncio.sleep(0.1)
    raise AssertionError(
        f"only {len(await cache_rows(hub, repo_id))} of {count} cache rows appeared"
    )


async def test_push_prebuilds_every_tip_and_the_head_set_then_clone_hits(
    prebuild_hub: PrebuildHub,
) -> None:
    owner, slug, _, repo_id = await push_vector(prebuild_hub, branches=BOTH)
    rows = await wait_for_rows(prebuild_hub, repo_id, 3)
    assert {tuple(r.want_commit_ids) for r in rows} == {
        (MAIN,),
        (CHORUS,),
        tuple(sorted([MAIN, CHORUS])),
    }
    assert {r.tip_commit_id for r in rows} == {MAIN, CHORUS, None}
    for row in rows:
        assert await named_objects_stored(prebuild_hub, repo_id, list(row.want_commit_ids))

    response = await call(
        prebuild_hub.client,
        owner,
        slug,
        "fetch",
        {"want": [CHORUS, MAIN, MAIN], "have": [], "capabilities": ["mpack-url"]},
    )
    assert response.headers["x-musehub-cache"] == "HIT"
    answer = decode(response)
    head_set_row = next(r for r in rows if r.tip_commit_id is None)
    assert answer["mpack_sha256"] == head_set_row.sha256


async def test_rebuild_signal_with_force_rebuilds_fresh_packs(prebuild_hub: PrebuildHub) -> None:
    _, _, _, repo_id = await push_vector(prebuild_hub, branches=BOTH)
    before = {r.cache_id: r.created_at for r in await wait_for_rows(prebuild_hub, repo_id, 3)}
    assert prebuild_hub.temporal is not None
    await request_prebuild(
        prebuild_hub.temporal,
        prebuild_hub.settings,
        repo_id=repo_id,
        repo_name="rebuild/test",
        tips=[MAIN, CHORUS],
        force=True,
        signal=REBUILD_SIGNAL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        after = {r.cache_id: r.created_at for r in await cache_rows(prebuild_hub, repo_id)}
        if all(after[c] > before[c] for c in before):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("force rebuild did not refresh every cache row")
    handle = prebuild_hub.temporal.get_workflow_handle(prebuild_workflow_id(repo_id))
    status = await handle.query(STATUS_QUERY, result_type=PrebuildStatus)
    assert status.repo_id == repo_id
    assert status.built >= 3


async def test_push_succeeds_when_temporal_is_unreachable(prebuild_hub: PrebuildHub) -> None:
    settings = load_settings(temporal={"address": "127.0.0.1:1"})
    unreachable = LazyTemporalClient(settings, timeout=1.0)
    prebuild_hub.app.state.parts = replace(parts_of(prebuild_hub.app), temporal=unreachable)
    owner, slug, token = await prebuild_hub.create_repo()
    started = time.monotonic()
    answer = decode(
        await push_records(
            prebuild_hub.client,
            owner,
            slug,
            token,
            branch="main",
            tip=MAIN,
            commits=VECTOR["commits"],
            snapshots=VECTOR["snapshots"],
            objects=VECTOR["objects"],
        )
    )
    assert answer["ok"] is True
    assert time.monotonic() - started < 10
    assert decode(await call(prebuild_hub.client, owner, slug, "refs"))["branch_heads"] == {
        "main": MAIN
    }


async def test_storage_fault_on_first_attempt_is_retried_to_success(
    hub: Hub, temporal_env: WorkflowEnvironment
) -> None:
    """The worker's blob reads fail at first; the activity retries and the pack still lands."""
    settings = settings_with_fresh_queue(hub.settings)
    flaky = FaultyStorage(hub.storage, fail_reads=2)
    owner, slug, _token, repo_id = await push_vector(hub)
    async with running_workers(
        temporal_env.client,
        settings,
        storage=flaky,
        database_url=hub.engine.url.render_as_string(False),
    ):
        await request_prebuild(
            temporal_env.client, settings, repo_id=repo_id, repo_name=f"{owner}/{slug}", tips=[MAIN]
        )
        await wait_for_rows(hub, repo_id, 1)
    assert flaky.fail_reads == 0  # both injected faults were hit ...
    assert await named_objects_stored(hub, repo_id, [MAIN])  # ... and survived
