"""Issue 12, item 5 (GC side): GC checks live rows' pack objects against storage. Rows whose
object storage lost (or holds cut short) are dropped, so a lost pack's hits never keep its row
alive, and the same run's reconcile builds it again; rows whose object is there stay. A run
checks a bounded window of packs, wrapping around the key order."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.testing import WorkflowEnvironment

from musehub.contract import GcInput
from musehub.services import gc
from musehub.services.schedules import gc_input
from musehub.settings import load_settings
from tests.conftest import Hub
from tests.gc.helpers import cache_row, new_repo_id, put_pack, row_exists
from tests.prebuild.conftest import settings_with_fresh_queue
from worker import running_workers
from workflows.gc import GarbageCollectFetchMPacks

EVERY_PACK = 1_000_000  # the shared test database holds other tests' rows too


async def test_rows_of_lost_packs_are_dropped_rows_of_stored_packs_stay(hub: Hub) -> None:
    repo_id = await new_repo_id(hub)
    kept_key = await put_pack(hub.storage, repo_id, b"still in storage")
    lost_key = await put_pack(hub.storage, repo_id, b"deleted behind the hub's back")
    cut_key = await put_pack(hub.storage, repo_id, b"cut short by a bad restore")
    expired_key = await put_pack(hub.storage, repo_id, b"lost, and its only row expired")
    kept = await cache_row(hub, repo_id, kept_key)
    lost = [await cache_row(hub, repo_id, lost_key) for _ in range(2)]  # one object, two rows
    cut = await cache_row(hub, repo_id, cut_key)
    expired = await cache_row(hub, repo_id, expired_key, expires_in=-timedelta(minutes=1))
    await hub.storage.delete(lost_key)
    await hub.storage.delete(expired_key)
    await hub.storage.put(cut_key, b"cut short")

    async with AsyncSession(hub.engine) as session:
        outcome = await gc.verify_live_packs(session, hub.storage, max_packs=EVERY_PACK)

    assert outcome.checked >= 3 and outcome.lost >= 2
    assert await row_exists(hub, kept)
    assert not any([await row_exists(hub, cache_id) for cache_id in [*lost, cut]])
    assert await row_exists(hub, expired)  # expired rows are step 1's to delete: not checked
    assert await hub.storage.size(kept_key) == len(b"still in storage")


async def test_a_run_checks_a_bounded_window_and_wraps_around(hub: Hub) -> None:
    repo_id = await new_repo_id(hub)
    for n in range(3):
        await cache_row(hub, repo_id, await put_pack(hub.storage, repo_id, f"pack {n}".encode()))
    past_every_key = "mpacks/~"  # after every key: the whole window comes from the wrap-around
    async with AsyncSession(hub.engine) as session:
        one = await gc.verify_live_packs(session, hub.storage, max_packs=1)
        two = await gc.verify_live_packs(session, hub.storage, max_packs=2, start=past_every_key)
    assert (one.checked, two.checked) == (1, 2)


async def test_a_run_with_the_check_off_keeps_rows_of_lost_packs(
    hub: Hub, temporal_env: WorkflowEnvironment
) -> None:
    settings = settings_with_fresh_queue(hub.settings)
    repo_id = await new_repo_id(hub)
    key = await put_pack(hub.storage, repo_id, b"lost, but nobody checks")
    cache_id = await cache_row(hub, repo_id, key)
    await hub.storage.delete(key)
    async with running_workers(
        temporal_env.client,
        settings,
        storage=hub.storage,
        database_url=hub.engine.url.render_as_string(False),
    ):
        result = await temporal_env.client.execute_workflow(
            GarbageCollectFetchMPacks.run,
            GcInput(reconcile_max_repos=0, verify_max_packs=0),
            id=f"gc-test-{uuid.uuid4().hex[:8]}",
            task_queue=settings.temporal.task_queue,
        )
    assert (result.packs_verified, result.lost_packs) == (0, 0)
    assert await row_exists(hub, cache_id)
    async with AsyncSession(hub.engine) as session:  # leave no row naming a missing object
        await gc.verify_live_packs(session, hub.storage, max_packs=EVERY_PACK)


def test_the_setting_reaches_the_schedules_input(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MUSEHUB_GC_VERIFY_MAX_PACKS", "7")
    assert gc_input(load_settings()).verify_max_packs == 7
    monkeypatch.setenv("MUSEHUB_GC_VERIFY_MAX_PACKS", "0")  # off
    assert gc_input(load_settings()).verify_max_packs == 0
    assert GcInput().verify_max_packs > 0  # a schedule written before the setting still checks
