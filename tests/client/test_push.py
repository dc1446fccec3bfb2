"""push_repository follows the protocol's push sequence and reports rejections plainly."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from musehub.client.errors import PushRejected
from musehub.client.push import PRESIGN_THRESHOLD, push_repository
from musehub.client.wire import MuseRemote
from musehub.mpack.ids import commit_id, snapshot_id
from tests.client.fake_hub import BASE, FakeHub

BIG = b"b" * (PRESIGN_THRESHOLD + 1)
SMALL = b"small file\n"


def _history() -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]], dict[str, bytes]]:
    objects = {hashlib.sha256(c).hexdigest(): c for c in (BIG, SMALL)}
    ids = list(objects)
    commits: list[dict[str, Any]] = []
    snapshots: dict[str, dict[str, Any]] = {}
    parent = None
    for n, manifest in enumerate(({"a.txt": ids[1]}, {"a.txt": ids[1], "big.bin": ids[0]})):
        sid = snapshot_id(manifest)
        snapshots[sid] = {"snapshot_id": sid, "manifest": manifest, "created_at": "t"}
        at = f"2026-01-0{n + 1}T00:00:00.000001+00:00"
        cid = commit_id([parent] if parent else [], sid, f"c{n}", at)
        commits.append(
            {
                "commit_id": cid,
                "snapshot_id": sid,
                "message": f"c{n}",
                "committed_at": at,
                "parent_commit_id": parent,
                "parent2_commit_id": None,
                "branch": "main",
            }
        )
        parent = cid
    return commits[::-1], snapshots, objects  # tip-first


async def test_push_sequence_presigns_only_large_objects() -> None:
    hub = FakeHub()
    commits, snapshots, objects = _history()
    async with MuseRemote(BASE, "tok", transport=hub.transport()) as remote:
        answer = await push_repository(remote, commits, snapshots, objects, "main")
    assert answer["ok"] is True and hub.heads == {"main": commits[0]["commit_id"]}
    assert hub.ops() == [
        "GET refs",
        "POST filter-objects",
        "POST presign",
        "PUT /_blob/" + hashlib.sha256(BIG).hexdigest(),
        "POST push/objects",
        "POST push",
    ]
    presign = next(s for s in hub.seen if s.path.endswith("/presign"))
    assert presign.body == {"object_ids": [hashlib.sha256(BIG).hexdigest()], "direction": "put"}
    put = next(s for s in hub.seen if s.method == "PUT")
    assert "authorization" not in put.headers
    assert put.headers["content-type"] == "application/x-www-form-urlencoded"
    pushed = hub.seen[-1].body
    assert pushed["bundle"]["objects"] == [] and pushed["force"] is False
    assert [c["commit_id"] for c in pushed["bundle"]["commits"]] == [
        c["commit_id"] for c in commits
    ]
    assert set(hub.objects) == set(objects)


async def test_no_presign_means_everything_inline() -> None:
    hub = FakeHub(presign=False)
    commits, snapshots, objects = _history()
    async with MuseRemote(BASE, transport=hub.transport()) as remote:
        await push_repository(remote, commits, snapshots, objects.__getitem__, "main")
    assert "PUT" not in " ".join(hub.ops()) and set(hub.objects) == set(objects)


async def test_second_push_sends_only_new_commits_and_objects() -> None:
    hub = FakeHub()
    commits, snapshots, objects = _history()
    async with MuseRemote(BASE, transport=hub.transport()) as remote:
        await push_repository(remote, commits[1:], snapshots, objects, "main")
        hub.seen.clear()
        await push_repository(remote, commits, snapshots, objects, "main")
    pushed = hub.seen[-1].body["bundle"]
    assert [c["commit_id"] for c in pushed["commits"]] == [commits[0]["commit_id"]]
    assert "POST push/objects" not in hub.ops()  # the big blob went by presigned PUT


async def test_up_to_date_push_sends_nothing() -> None:
    hub = FakeHub()
    commits, snapshots, objects = _history()
    async with MuseRemote(BASE, transport=hub.transport()) as remote:
        await push_repository(remote, commits, snapshots, objects, "main")
        hub.seen.clear()
        answer = await push_repository(remote, commits, snapshots, objects, "main")
    assert answer["ok"] is True and hub.ops() == ["GET refs"]


async def test_diverged_push_is_rejected_with_the_message() -> None:
    hub = FakeHub()
    commits, snapshots, objects = _history()
    hub.heads["main"] = "f" * 64  # the remote moved on to a commit we do not have
    async with MuseRemote(BASE, transport=hub.transport()) as remote:
        with pytest.raises(PushRejected, match="remote has diverged: non-fast-forward"):
            await push_repository(remote, commits, snapshots, objects, "main")
