"""The prebuild activities alone, in `ActivityEnvironment` (no Temporal server): one build step
after another on a worker's staging folder, retries that resume or find the earlier attempt's
work, and the facts no retry changes raised as non-retryable errors of the contract's types."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.common import business_errors
from activities.prebuild import PrebuildActivities
from musehub.contract import (
    BAD_BUILD_ID,
    STAGING_LOST,
    SUPERSEDED,
    BuildStepInput,
    CheckCacheInput,
    DiscardBuildInput,
    RecordCacheInput,
    UploadInput,
    ZstdCopiesInput,
)
from musehub.db.engine import session_factory
from musehub.metrics import LOST_PACKS
from musehub.mpack.encoding import encoded_key
from musehub.services import staging
from musehub.services.superseded import Superseded
from tests.conftest import Hub
from tests.gc.helpers import cache_row, put_pack, row_exists
from tests.mpack.helpers import VECTOR_HEADS
from tests.wire.helpers import push_vector

MAIN = VECTOR_HEADS["main"]


@pytest.fixture
def stage_every_blob(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The test vector's blobs are small: stage them all, as if they were large."""
    monkeypatch.setattr(staging, "STAGE_MIN_BYTES", 1)
    yield


def prebuild_activities(hub: Hub, tmp_path: Path) -> PrebuildActivities:
    return PrebuildActivities(
        session_factory(hub.engine),
        hub.storage,
        hub.settings,
        staging=staging.StagingArea(tmp_path / "worker", hub.storage),
        worker_task_queue="this-worker",
    )


async def test_a_build_step_by_step_heartbeats_and_its_retries_resume(
    hub: Hub, tmp_path: Path, stage_every_blob: None
) -> None:
    repo_id = (await push_vector(hub)).repo_id
    activities = prebuild_activities(hub, tmp_path)
    beats: list[object] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: beats.append(details)
    step = BuildStepInput(repo_id, [MAIN], "build-1")

    loaded = await env.run(activities.load_blobs, step)
    assert loaded.objects > 0 and loaded.reused == 0
    again = await env.run(activities.load_blobs, step)  # a retry keeps what was staged
    assert again.reused == loaded.objects
    built = await env.run(activities.assemble, step)
    uploaded = await env.run(
        activities.upload, UploadInput(repo_id, step.build_id, built.size, built.sha256)
    )
    assert await hub.storage.size(uploaded.mpack_id) == built.size
    assert not (tmp_path / "worker" / step.build_id).exists()  # the upload cleaned up
    # A retried upload whose first attempt's answer was lost finds the pack in storage.
    retried = await env.run(
        activities.upload, UploadInput(repo_id, step.build_id, built.size, built.sha256)
    )
    assert retried == uploaded
    recorded = await env.run(
        activities.record_cache,
        RecordCacheInput(
            repo_id,
            [MAIN],
            uploaded.mpack_id,
            built.size,
            built.sha256,
            built.commits,
            built.objects,
        ),
    )
    assert recorded.cache_id
    # After the record step: the pack's zstd copy, made once (issue 15).
    copies = await env.run(activities.make_zstd_copies, ZstdCopiesInput(repo_id, [MAIN]))
    assert copies.made == 1 and await hub.storage.exists(encoded_key(uploaded.mpack_id))
    none_left = await env.run(activities.make_zstd_copies, ZstdCopiesInput(repo_id, [MAIN]))
    assert none_left.made == 0
    assert len(beats) >= 4  # every long step heartbeats as it starts


async def test_a_lost_staging_folder_asks_for_a_fresh_build(
    hub: Hub, tmp_path: Path, stage_every_blob: None
) -> None:
    repo_id = (await push_vector(hub)).repo_id
    activities = prebuild_activities(hub, tmp_path)
    env = ActivityEnvironment()
    step = BuildStepInput(repo_id, [MAIN], "build-2")
    await env.run(activities.load_blobs, step)
    shutil.rmtree(tmp_path / "worker" / step.build_id / "objects")
    with pytest.raises(ApplicationError) as lost:
        await env.run(activities.assemble, step)
    assert (lost.value.type, lost.value.non_retryable) == (STAGING_LOST, True)
    with pytest.raises(ApplicationError) as no_pack:
        await env.run(activities.upload, UploadInput(repo_id, step.build_id, 10, "0" * 64))
    assert (no_pack.value.type, no_pack.value.non_retryable) == (STAGING_LOST, True)


async def test_a_bad_build_id_is_refused_for_good(hub: Hub, tmp_path: Path) -> None:
    activities = prebuild_activities(hub, tmp_path)
    with pytest.raises(ApplicationError) as refused:
        await ActivityEnvironment().run(activities.discard, DiscardBuildInput("../../etc"))
    assert (refused.value.type, refused.value.non_retryable) == (BAD_BUILD_ID, True)


def test_a_superseded_step_fails_for_good() -> None:
    with pytest.raises(ApplicationError) as stopped, business_errors():
        raise Superseded("tips [a] were replaced by a newer push")
    assert (stopped.value.type, stopped.value.non_retryable) == (SUPERSEDED, True)
    assert stopped.value.message == "tips [a] were replaced by a newer push"


@pytest.mark.parametrize("damage", ["deleted", "truncated"])
async def test_a_row_whose_pack_storage_lost_is_dropped_and_built(
    hub: Hub, tmp_path: Path, damage: str
) -> None:
    """Issue 12, item 5: only a pack still in storage, whole, counts as cached."""
    repo_id = (await push_vector(hub)).repo_id
    key = await put_pack(hub.storage, repo_id, b"the pack of main, as built")
    cache_id = await cache_row(hub, repo_id, key, want=[MAIN])
    activities = prebuild_activities(hub, tmp_path)
    env = ActivityEnvironment()
    check = CheckCacheInput(repo_id, [MAIN])
    assert (await env.run(activities.check_cache, check)).verdict == "fresh"
    lost_before = LOST_PACKS._value.get()

    if damage == "deleted":
        await hub.storage.delete(key)
    else:
        await hub.storage.put(key, b"the pack of")
    verdict = await env.run(activities.check_cache, check)

    assert (verdict.verdict, verdict.task_queue) == ("build", "this-worker")
    assert not await row_exists(hub, cache_id)
    assert LOST_PACKS._value.get() == lost_before + 1
