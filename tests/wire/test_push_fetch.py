"""Push the real client's records, then fetch them back: every field unchanged, every hash right."""

from __future__ import annotations

import hashlib
import io

import msgpack
import pytest

from musehub.mpack.reader import read_mpack
from tests.conftest import Hub
from tests.mpack.helpers import VECTOR_HEADS, load_vector
from tests.wire.helpers import call, closure, decode, push_records, push_vector

VECTOR = load_vector()
MAIN, CHORUS = VECTOR_HEADS["main"], VECTOR_HEADS["chorus"]
BOTH = ("main", "chorus")


async def test_refs_after_push_name_both_branches(hub: Hub) -> None:
    owner, slug, _, _ = await push_vector(hub, branches=BOTH)
    refs = decode(await call(hub.client, owner, slug, "refs"))
    assert refs["branch_heads"] == {"main": MAIN, "chorus": CHORUS}
    assert refs["default_branch"] == "main"
    assert refs["domain"] == "code"


async def test_clone_by_url_returns_every_record_unchanged(hub: Hub) -> None:
    owner, slug, _, _ = await push_vector(hub, branches=BOTH)
    answer = decode(
        await call(
            hub.client,
            owner,
            slug,
            "fetch",
            {"want": [MAIN, CHORUS, MAIN], "have": [], "capabilities": ["mpack-url"]},
        )
    )
    assert answer["branch_heads"] == {"main": MAIN, "chorus": CHORUS}
    download = await hub.client.get(answer["mpack_url"])
    assert download.status_code == 200
    assert len(download.content) == answer["mpack_size"]
    assert hashlib.sha256(download.content).hexdigest() == answer["mpack_sha256"]
    pack = read_mpack(io.BytesIO(download.content))
    key = lambda r: r["commit_id"]  # noqa: E731
    assert sorted(pack.commits, key=key) == sorted(VECTOR["commits"], key=key)
    assert {s["snapshot_id"]: s for s in pack.snapshots} == {
        s["snapshot_id"]: s for s in VECTOR["snapshots"]
    }
    assert {o["object_id"]: o["content"] for o in pack.objects} == {
        o["object_id"]: o["content"] for o in VECTOR["objects"]
    }


async def test_legacy_inline_answer_is_what_an_old_client_reads(hub: Hub) -> None:
    owner, slug, _, _ = await push_vector(hub, branches=BOTH)
    response = await call(hub.client, owner, slug, "fetch", {"want": [MAIN, CHORUS], "have": []})
    assert response.headers["content-type"] == "application/x-msgpack"
    answer = msgpack.unpackb(response.content, raw=False)
    assert isinstance(answer, dict)
    assert set(answer) == {"commits", "snapshots", "objects", "branch_heads"}
    assert answer["branch_heads"] == {"main": MAIN, "chorus": CHORUS}
    assert len(answer["objects"]) == len(VECTOR["objects"])
    for obj in answer["objects"]:
        assert isinstance(obj["content"], bytes)
        assert hashlib.sha256(obj["content"]).hexdigest() == obj["object_id"]
    assert len(answer["commits"]) == len(VECTOR["commits"])


async def test_fetch_with_have_returns_exactly_the_missing_closure(hub: Hub) -> None:
    owner, slug, _, _ = await push_vector(hub, branches=BOTH)
    by_id = {c["commit_id"]: c for c in VECTOR["commits"]}
    have = [by_id[MAIN]["parent_commit_id"]]
    answer = decode(await call(hub.client, owner, slug, "fetch", {"want": [MAIN], "have": have}))
    expected = closure(VECTOR["commits"], [MAIN]) - closure(VECTOR["commits"], have)
    assert {c["commit_id"] for c in answer["commits"]} == expected
    for obj in answer["objects"]:
        assert hashlib.sha256(obj["content"]).hexdigest() == obj["object_id"]


async def test_same_fetch_twice_gives_the_same_pack(hub: Hub) -> None:
    owner, slug, _, _ = await push_vector(hub, branches=BOTH)
    body = {"want": [MAIN], "have": [], "capabilities": ["mpack-url"]}
    first = decode(await call(hub.client, owner, slug, "fetch", body))
    second = decode(await call(hub.client, owner, slug, "fetch", body))
    assert first["mpack_sha256"] == second["mpack_sha256"]


async def test_non_fast_forward_is_refused_and_changes_nothing(hub: Hub) -> None:
    owner, slug, token, _ = await push_vector(hub, branches=BOTH)
    response = await push_records(
        hub.client,
        owner,
        slug,
        token,
        branch="main",
        tip=CHORUS,
        commits=VECTOR["commits"],
        snapshots=VECTOR["snapshots"],
        objects=VECTOR["objects"],
    )
    assert response.status_code == 409
    assert "non-fast-forward" in response.text
    refs = decode(await call(hub.client, owner, slug, "refs"))
    assert refs["branch_heads"]["main"] == MAIN


async def test_force_push_moves_the_branch_back(hub: Hub) -> None:
    owner, slug, token, _ = await push_vector(hub, branches=BOTH)
    answer = decode(
        await push_records(
            hub.client,
            owner,
            slug,
            token,
            branch="main",
            tip=CHORUS,
            commits=VECTOR["commits"],
            snapshots=VECTOR["snapshots"],
            objects=VECTOR["objects"],
            force=True,
        )
    )
    assert answer["branch_heads"]["main"] == CHORUS


async def test_negotiate_acknowledges_known_commits(hub: Hub) -> None:
    owner, slug, _, _ = await push_vector(hub, branches=BOTH)
    unknown = "f" * 64
    answer = decode(
        await call(
            hub.client, owner, slug, "negotiate", {"want": [MAIN], "have": [unknown, CHORUS]}
        )
    )
    assert answer == {"ack": [CHORUS], "common_base": CHORUS, "ready": True}


@pytest.mark.parametrize("private", [True])
async def test_private_repo_is_invisible_without_its_owners_token(hub: Hub, private: bool) -> None:
    owner, slug, token, _ = await push_vector(hub, branches=BOTH, private=private)
    assert (await call(hub.client, owner, slug, "refs")).status_code == 404
    body = {"want": [MAIN], "have": [], "capabilities": ["mpack-url"]}
    assert (await call(hub.client, owner, slug, "fetch", body)).status_code == 404
    _, _, stranger = await hub.create_repo()
    assert (await call(hub.client, owner, slug, "refs", token=stranger)).status_code == 404
    assert decode(await call(hub.client, owner, slug, "refs", token=token))["branch_heads"]
