"""A push that adds thousands of commits refreshes the planner's statistics in its own
transaction, so the history queries that follow (its fast-forward check, the prebuild's pack
plan) are not planned as if the repo held one commit; a small push leaves them alone."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import text

from musehub.db.statistics import ANALYZE_AFTER_NEW_COMMITS
from tests.conftest import Hub
from tests.mpack.helpers import make_commit, make_object, make_snapshot
from tests.wire.helpers import decode, push_records

pytestmark = pytest.mark.local_storage_only("the database's planner statistics")


async def last_analyzed(hub: Hub) -> datetime | None:
    async with hub.engine.connect() as connection:
        return await connection.scalar(
            text("SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'musehub_commits'")
        )


def linear_history(count: int) -> tuple[list[dict], list[dict], list[dict]]:
    blob = make_object(b"the one file")
    snapshot = make_snapshot({"a.txt": blob["object_id"]})
    commits, parent = [], None
    for n in range(count):
        commit = make_commit(snapshot["snapshot_id"], f"commit {n}", (parent, None))
        commits.append(commit)
        parent = commit["commit_id"]
    return commits, [snapshot], [blob]


async def push(hub: Hub, count: int) -> None:
    owner, slug, token = await hub.create_repo()
    commits, snapshots, objects = linear_history(count)
    decode(
        await push_records(
            hub.client,
            owner,
            slug,
            token,
            branch="main",
            tip=commits[-1]["commit_id"],
            commits=commits,
            snapshots=snapshots,
            objects=objects,
        )
    )


async def test_a_big_push_analyzes_and_a_small_one_does_not(hub: Hub) -> None:
    before = await last_analyzed(hub)
    await push(hub, 20)
    assert await last_analyzed(hub) == before
    await push(hub, ANALYZE_AFTER_NEW_COMMITS)
    after = await last_analyzed(hub)
    assert after is not None and (before is None or after > before)
