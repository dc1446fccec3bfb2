"""Hostile or broken clients get a 4xx with one readable line, never a 500, and change nothing."""

from __future__ import annotations

import hashlib
from typing import Any

import msgpack
import pytest

from tests.conftest import Hub
from tests.mpack.helpers import VECTOR_HEADS, load_vector
from tests.wire.helpers import call, decode, push_records

pytestmark = pytest.mark.local_storage_only("requests refused before storage is touched")

VECTOR = load_vector()
MAIN = VECTOR_HEADS["main"]


async def _refs(hub: Hub, owner: str, slug: str) -> dict[str, Any]:
    return decode(await call(hub.client, owner, slug, "refs"))


@pytest.mark.parametrize(
    "raw, fragment",
    [
        (b"\xc1", "not valid msgpack"),
        (b"", "empty"),
        (msgpack.packb([1, 2]), "must be a msgpack map"),
        (msgpack.packb({"want": [MAIN]}) + b"\x00", "msgpack"),
        (b'{"want": []}', "msgpack"),
    ],
)
async def test_malformed_bodies_are_400(hub: Hub, raw: bytes, fragment: str) -> None:
    owner, slug, _ = await hub.create_repo()
    response = await call(hub.client, owner, slug, "fetch", raw=raw)
    assert response.status_code == 400
    assert fragment in response.text


@pytest.mark.parametrize(
    "body, fragment",
    [
        ({"want": "abc"}, "'want' must be a list"),
        ({"want": []}, "must not be empty"),
        ({"want": ["sha256:" + "a" * 64]}, "not a 64-character lowercase hex id"),
        ({"want": ["A" * 64]}, "not a 64-character lowercase hex id"),
        ({"want": [7]}, "not a 64-character lowercase hex id"),
        ({"want": [MAIN], "have": {"x": 1}}, "'have' must be a list"),
        ({"want": [MAIN], "capabilities": "mpack-url"}, "'capabilities' must be a list"),
    ],
)
async def test_wrong_types_and_bad_ids_are_400(
    hub: Hub, body: dict[str, Any], fragment: str
) -> None:
    owner, slug, _ = await hub.create_repo()
    response = await call(hub.client, owner, slug, "fetch", body)
    assert response.status_code == 400, response.text
    assert fragment in response.text


async def test_unknown_repo_and_unknown_want_are_404(hub: Hub) -> None:
    response = await call(hub.client, "nobody", "nothing", "refs")
    assert response.status_code == 404
    assert "not found" in response.text
    owner, slug, _ = await hub.create_repo()
    response = await call(hub.client, owner, slug, "fetch", {"want": ["a" * 64], "have": []})
    assert response.status_code == 404
    assert "not in this repository" in response.text


async def test_object_whose_bytes_do_not_hash_to_its_id_is_refused(hub: Hub) -> None:
    owner, slug, token = await hub.create_repo()
    bad = {"object_id": hashlib.sha256(b"one").hexdigest(), "content": b"two"}
    response = await call(hub.client, owner, slug, "push/objects", {"objects": [bad]}, token)
    assert response.status_code == 400
    assert "hash" in response.text
    missing = decode(
        await call(
            hub.client, owner, slug, "filter-objects", {"object_ids": [bad["object_id"]]}, token
        )
    )["missing"]
    assert missing == [bad["object_id"]]


async def test_push_naming_objects_never_uploaded_changes_nothing(hub: Hub) -> None:
    owner, slug, token = await hub.create_repo()
    response = await push_records(
        hub.client,
        owner,
        slug,
        token,
        branch="main",
        tip=MAIN,
        commits=VECTOR["commits"],
        snapshots=VECTOR["snapshots"],
        objects=[],
    )
    assert response.status_code == 400
    assert "never uploaded" in response.text
    assert (await _refs(hub, owner, slug))["branch_heads"] == {}
    fetch = await call(hub.client, owner, slug, "fetch", {"want": [MAIN], "have": []})
    assert fetch.status_code == 404  # no half-stored commit is reachable either


async def test_push_with_a_parent_missing_is_refused(hub: Hub) -> None:
    owner, slug, token = await hub.create_repo()
    decode(
        await call(hub.client, owner, slug, "push/objects", {"objects": VECTOR["objects"]}, token)
    )
    head = next(c for c in VECTOR["commits"] if c["commit_id"] == MAIN)
    snapshot = next(s for s in VECTOR["snapshots"] if s["snapshot_id"] == head["snapshot_id"])
    bundle = {"commits": [head], "snapshots": [snapshot], "objects": []}
    response = await call(
        hub.client, owner, slug, "push", {"bundle": bundle, "branch": "main"}, token
    )
    assert response.status_code == 400
    assert "push the full history" in response.text
    assert (await _refs(hub, owner, slug))["branch_heads"] == {}


async def test_tampered_commit_record_is_refused(hub: Hub) -> None:
    owner, slug, token = await hub.create_repo()
    commits = [dict(c) for c in VECTOR["commits"]]
    for c in commits:
        if c["commit_id"] == MAIN:
            c["message"] = "rewritten history"
    response = await push_records(
        hub.client,
        owner,
        slug,
        token,
        branch="main",
        tip=MAIN,
        commits=commits,
        snapshots=VECTOR["snapshots"],
        objects=VECTOR["objects"],
    )
    assert response.status_code == 400
    assert "commit_id" in response.text


@pytest.mark.parametrize("branch", ["", "../x", "a b", "x\x00y", 5, "a" * 300])
async def test_bad_branch_names_are_400(hub: Hub, branch: object) -> None:
    owner, slug, token = await hub.create_repo()
    bundle: dict[str, list[Any]] = {"commits": [], "snapshots": [], "objects": []}
    response = await call(
        hub.client, owner, slug, "push", {"bundle": bundle, "branch": branch}, token
    )
    assert response.status_code == 400
    assert "branch" in response.text


async def test_push_needs_the_owners_token(hub: Hub) -> None:
    owner, slug, _ = await hub.create_repo()
    body: dict[str, list[str]] = {"object_ids": []}
    assert (await call(hub.client, owner, slug, "filter-objects", body)).status_code == 401
    _, _, stranger = await hub.create_repo()
    response = await call(hub.client, owner, slug, "filter-objects", body, stranger)
    assert response.status_code == 403
    bogus = "mh_0123456789abcdef_" + "x" * 43
    assert (await call(hub.client, owner, slug, "refs", token=bogus)).status_code == 401


async def test_oversized_body_is_413(hub: Hub) -> None:
    owner, slug, token = await hub.create_repo()
    limit = hub.settings.api.max_body_bytes
    hub.settings.api.max_body_bytes = 2048
    try:
        response = await call(
            hub.client,
            owner,
            slug,
            "push/objects",
            {"objects": [{"object_id": "a" * 64, "content": b"x" * 4096}]},
            token,
        )
    finally:
        hub.settings.api.max_body_bytes = limit
    assert response.status_code == 413
    assert "over the limit" in response.text


async def test_no_redirect_for_a_trailing_slash(hub: Hub) -> None:
    owner, slug, _ = await hub.create_repo()
    response = await hub.client.get(f"/{owner}/{slug}/refs/")
    assert response.status_code == 404
    assert "location" not in response.headers


@pytest.mark.parametrize(
    ("method", "op"),
    [
        ("GET", "refs"),
        ("POST", "fetch"),
        ("POST", "negotiate"),
        ("POST", "push"),
        ("POST", "filter-objects"),
        ("POST", "presign"),
        ("POST", "push/objects"),
    ],
)
async def test_a_nul_or_newline_in_owner_or_slug_is_404_on_every_repo_route(
    hub: Hub, method: str, op: str
) -> None:
    owner, slug, token = await hub.create_repo()
    body = msgpack.packb({"want": ["a" * 64], "have": []}, use_bin_type=True)
    for path in (f"/{owner}%00/{slug}", f"/{owner}/{slug}%00", f"/{owner}/{slug}%0A"):
        response = await hub.client.request(
            method,
            f"{path}/{op}",
            content=body if method == "POST" else None,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/x-msgpack"},
        )
        assert response.status_code == 404, (path, op, response.status_code, response.text)
        assert "not found" in response.text


@pytest.mark.parametrize(("length", "status"), [("²", 400), ("1" * 5000, 413), ("-1", 400)])
@pytest.mark.parametrize("op", ["fetch", "negotiate"])
async def test_a_content_length_that_is_no_number_is_a_4xx(
    hub: Hub, op: str, length: str, status: int
) -> None:
    owner, slug, _ = await hub.create_repo()
    response = await hub.client.post(
        f"/{owner}/{slug}/{op}",
        content=b"\x80",
        headers={
            b"Content-Length": length.encode("latin-1"),
            b"Content-Type": b"application/x-msgpack",
        },
    )
    assert response.status_code == status, response.text
