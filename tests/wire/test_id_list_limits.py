"""Id lists at the advertised limits: PostgreSQL's driver takes at most 32,767 bind parameters
per statement, so a caller-sized list goes in as one array parameter, never as `IN (...)`
with one parameter per id (issue 12, item 4)."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from api.routes.wire import MAX_FILTER
from musehub.db.models import StoredObject
from musehub.services.keys import object_key
from tests.conftest import Hub
from tests.mpack.helpers import make_commit, make_object, make_snapshot
from tests.wire.helpers import call, decode

pytestmark = pytest.mark.local_storage_only(
    "database parameter limits; it reads the local backend's URLs"
)

OVER_THE_DRIVER_LIMIT = 33_000


def _ids(n: int, salt: str) -> list[str]:
    return [hashlib.sha256(f"{salt}{i}".encode()).hexdigest() for i in range(n)]


async def _store(
    hub: Hub, owner: str, slug: str, token: str, objects: list[dict[str, Any]]
) -> None:
    for start in range(0, len(objects), 400):
        body = {"objects": objects[start : start + 400]}
        decode(await call(hub.client, owner, slug, "push/objects", body, token))


async def test_filter_objects_answers_the_advertised_200000_ids(hub: Hub) -> None:
    owner, slug, token = await hub.create_repo()
    held = [make_object(b"held %d" % i) for i in range(3)]
    await _store(hub, owner, slug, token, held)
    ids = _ids(MAX_FILTER - len(held), "filter") + [o["object_id"] for o in held]
    answer = decode(
        await call(hub.client, owner, slug, "filter-objects", {"object_ids": ids}, token)
    )
    assert answer["missing"] == ids[: -len(held)]


async def test_one_id_over_the_limit_is_400_naming_it(hub: Hub) -> None:
    owner, slug, token = await hub.create_repo()
    ids = _ids(MAX_FILTER + 1, "over")
    for op in ("filter-objects", "presign"):
        response = await call(hub.client, owner, slug, op, {"object_ids": ids}, token)
        assert response.status_code == 400
        assert f"at most {MAX_FILTER}" in response.text


async def test_presign_answers_the_advertised_200000_ids(hub: Hub) -> None:
    owner, slug, token = await hub.create_repo()
    held = make_object(b"already here")
    await _store(hub, owner, slug, token, [held])
    ids = [held["object_id"], *_ids(MAX_FILTER - 1, "presign")]
    body = {"object_ids": ids, "direction": "put"}
    answer = decode(await call(hub.client, owner, slug, "presign", body, token))
    assert len(answer["presigned"]) == MAX_FILTER - 1
    assert held["object_id"] not in answer["presigned"]
    assert answer["presigned"][ids[1]].startswith("http://hub.test/_storage/uploads/")


async def _hold_rows(hub: Hub, owner: str, slug: str, objects: list[dict[str, Any]]) -> None:
    """The object rows only: /push checks rows, and 33,000 uploads would take half a minute."""
    repo_id = decode(await call(hub.client, owner, slug, "refs"))["repo_id"]
    rows = [
        {
            "repo_id": repo_id,
            "object_id": o["object_id"],
            "size": len(o["content"]),
            "storage_key": object_key(repo_id, o["object_id"]),
        }
        for o in objects
    ]
    async with AsyncSession(hub.engine) as session:
        # executemany form: SQLAlchemy batches it itself; `.values(rows)` compiled one bind
        # parameter per value, about 20 s of CPU for these rows.
        await session.execute(insert(StoredObject), rows)
        await session.commit()


async def test_a_push_whose_snapshot_names_over_33000_objects(hub: Hub) -> None:
    owner, slug, token = await hub.create_repo()
    objects = [make_object(b"%d" % i) for i in range(OVER_THE_DRIVER_LIMIT)]
    await _hold_rows(hub, owner, slug, objects)
    snapshot = make_snapshot(
        {f"d{i % 100}/f{i}.txt": o["object_id"] for i, o in enumerate(objects)}
    )
    commit = make_commit(snapshot["snapshot_id"], "33,000 files")
    bundle = {"commits": [commit], "snapshots": [snapshot], "objects": []}
    pushed = decode(
        await call(hub.client, owner, slug, "push", {"bundle": bundle, "branch": "main"}, token)
    )
    assert pushed["branch_heads"] == {"main": commit["commit_id"]}
    missing = decode(
        await call(
            hub.client,
            owner,
            slug,
            "filter-objects",
            {"object_ids": [o["object_id"] for o in objects]},
            token,
        )
    )["missing"]
    assert missing == []
