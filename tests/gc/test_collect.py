"""FMC_20 and the GC deletion order, step by step against real PostgreSQL and local storage:
expired rows and their objects go, fresh ones stay, a shared object stays while a live row
names it, a crash between the row delete and the object delete is recovered by the orphan sweep,
and orphans and stale uploads go only once older than the grace period."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from musehub.services import gc
from musehub.storage import StorageError
from tests.conftest import Hub
from tests.faults import FaultyStorage
from tests.gc.helpers import (
    DAY,
    age,
    cache_row,
    clear_what_other_tests_left,
    collect_expired,
    commit_id,
    new_repo_id,
    put_pack,
    row_exists,
    set_expiry,
)

GRACE = DAY


async def test_expired_rows_and_their_objects_go_fresh_ones_stay(hub: Hub) -> None:
    repo_id = await new_repo_id(hub)
    old_key = await put_pack(hub.storage, repo_id, b"old pack")
    fresh_key = await put_pack(hub.storage, repo_id, b"fresh pack")
    old_row = await cache_row(hub, repo_id, old_key, expires_in=-timedelta(minutes=1))
    fresh_row = await cache_row(hub, repo_id, fresh_key)

    rows_deleted, deleted = await collect_expired(hub, hub.storage)

    assert rows_deleted >= 1 and old_key in deleted
    assert not await row_exists(hub, old_row)
    assert not await hub.storage.exists(old_key)
    assert await row_exists(hub, fresh_row)
    assert await hub.storage.size(fresh_key) == len(b"fresh pack")


async def test_shared_object_survives_while_a_live_row_names_it(hub: Hub) -> None:
    repo_id = await new_repo_id(hub)
    key = await put_pack(hub.storage, repo_id, b"same bytes for two want sets")
    expired = await cache_row(hub, repo_id, key, expires_in=-timedelta(minutes=1))
    live = await cache_row(hub, repo_id, key, expires_in=timedelta(minutes=5))

    _, deleted = await collect_expired(hub, hub.storage)
    assert key not in deleted
    assert not await row_exists(hub, expired)
    assert await hub.storage.exists(key)

    await set_expiry(hub, live, -timedelta(seconds=1))
    _, deleted = await collect_expired(hub, hub.storage)
    assert key in deleted
    assert not await hub.storage.exists(key)


async def test_failed_object_delete_leaves_an_orphan_the_next_sweep_removes(hub: Hub) -> None:
    repo_id = await new_repo_id(hub)
    key = await put_pack(hub.storage, repo_id, b"pack whose delete fails once")
    cache_id = await cache_row(hub, repo_id, key, expires_in=-timedelta(minutes=1))
    flaky = FaultyStorage(hub.storage, fail_deletes=1)

    with pytest.raises(StorageError):  # the crash point: rows committed, object still there
        await collect_expired(hub, flaky)
    assert not await row_exists(hub, cache_id)
    assert await hub.storage.exists(key)  # never a row naming a missing object

    age(hub.storage, key, 8 * DAY)  # the pack was written when its row was, a week ago
    async with AsyncSession(hub.engine) as session:
        swept = await gc.sweep_orphan_mpacks(session, flaky, grace=GRACE)
    assert swept.deleted >= 1
    assert not await hub.storage.exists(key)


async def test_orphans_and_uploads_go_only_after_the_grace_period(hub: Hub) -> None:
    repo_id = await new_repo_id(hub)
    old_orphan = await put_pack(hub.storage, repo_id, b"orphan, old")
    young_orphan = await put_pack(hub.storage, repo_id, b"orphan, young")
    named = await put_pack(hub.storage, repo_id, b"old but named by a live row")
    await cache_row(hub, repo_id, named)
    old_upload, young_upload = (f"uploads/{repo_id}/{commit_id()}" for _ in range(2))
    for key in (old_upload, young_upload):
        await hub.storage.put(key, b"presigned PUT nobody pushed")
    for key in (old_orphan, named, old_upload):
        age(hub.storage, key, 2 * GRACE)

    async with AsyncSession(hub.engine) as session:
        orphans = await gc.sweep_orphan_mpacks(session, hub.storage, grace=GRACE)
    uploads = await gc.sweep_stale_uploads(hub.storage, grace=GRACE)

    assert orphans.deleted >= 1 and uploads.deleted >= 1
    assert not await hub.storage.exists(old_orphan)
    assert not await hub.storage.exists(old_upload)
    for kept in (young_orphan, named, young_upload):
        assert await hub.storage.exists(kept), kept


async def test_an_orphan_rewritten_after_it_was_listed_is_kept(hub: Hub) -> None:
    """An uncached fetch rewrites its pack before serving it: the sweep re-checks the age."""
    repo_id = await new_repo_id(hub)
    key = await put_pack(hub.storage, repo_id, b"served uncached just now")
    listed = await gc.stat(hub.storage, key)
    assert listed is not None
    cutoff = listed.last_modified - timedelta(seconds=1)  # it was listed as older than this
    async with AsyncSession(hub.engine) as session:
        assert await gc.delete_if_unnamed(session, hub.storage, key, written_before=cutoff) is None
    assert await hub.storage.exists(key)


async def test_dry_run_reports_without_deleting(hub: Hub) -> None:
    await clear_what_other_tests_left(hub, grace=GRACE)
    repo_id = await new_repo_id(hub)
    expired_key = await put_pack(hub.storage, repo_id, b"expired, would go")
    orphan_key = await put_pack(hub.storage, repo_id, b"orphan, would go")
    cache_id = await cache_row(hub, repo_id, expired_key, expires_in=-timedelta(minutes=1))
    age(hub.storage, orphan_key, 2 * GRACE)

    async with AsyncSession(hub.engine) as session:
        preview = await gc.preview_expired(session)
        orphans = await gc.sweep_orphan_mpacks(session, hub.storage, grace=GRACE, dry_run=True)

    assert preview.rows >= 1 and preview.objects >= 1
    assert orphans.deleted >= 1 and orphan_key in orphans.examples
    assert await row_exists(hub, cache_id)
    assert await hub.storage.exists(expired_key) and await hub.storage.exists(orphan_key)
    await collect_expired(hub, hub.storage)  # leave no expired row for the next test
