"""Speaking the wire protocol from tests, as the muse client does (msgpack both ways)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import httpx
import msgpack

from musehub.services.mpack_build import build_and_upload
from musehub.storage import LatencyInjectingStorage
from tests.conftest import Hub
from tests.mpack.helpers import VECTOR_HEADS, load_vector

HEADERS = {
    "Accept": "application/x-msgpack, application/json",
    "Content-Type": "application/x-msgpack",
}


async def call(
    client: httpx.AsyncClient,
    owner: str,
    slug: str,
    op: str,
    body: Any = None,
    token: str | None = None,
    raw: bytes | None = None,
) -> httpx.Response:
    headers = dict(HEADERS)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    url = f"/{owner}/{slug}/{op}"
    if body is None and raw is None:
        return await client.get(url, headers=headers)
    content = raw if raw is not None else msgpack.packb(body, use_bin_type=True)
    return await client.post(url, content=content, headers=headers)


def decode(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, f"{response.status_code}: {response.text[:400]}"
    decoded: dict[str, Any] = msgpack.unpackb(response.content, raw=False)
    return decoded


def closure(commits: Iterable[Mapping[str, Any]], tips: Iterable[str]) -> set[str]:
    by_id = {c["commit_id"]: c for c in commits}
    seen: set[str] = set()
    stack = list(tips)
    while stack:
        cid = stack.pop()
        if cid in seen or cid not in by_id:
            continue
        seen.add(cid)
        stack += [p for p in (by_id[cid]["parent_commit_id"], by_id[cid]["parent2_commit_id"]) if p]
    return seen


async def push_records(
    client: httpx.AsyncClient,
    owner: str,
    slug: str,
    token: str,
    *,
    branch: str,
    tip: str,
    commits: list[dict[str, Any]],
    snapshots: list[dict[str, Any]],
    objects: list[dict[str, Any]],
    force: bool = False,
) -> httpx.Response:
    """Push the history reaching `tip` the way muse does: objects first, then the bundle."""
    ids = closure(commits, [tip])
    bundle_commits = [c for c in commits if c["commit_id"] in ids]
    snapshot_ids = {c["snapshot_id"] for c in bundle_commits}
    bundle_snapshots = [s for s in snapshots if s["snapshot_id"] in snapshot_ids]
    needed = {oid for s in bundle_snapshots for oid in s["manifest"].values()}
    missing = decode(
        await call(client, owner, slug, "filter-objects", {"object_ids": sorted(needed)}, token)
    )["missing"]
    to_send = [o for o in objects if o["object_id"] in set(missing)]
    for start in range(0, len(to_send), 400):
        decode(
            await call(
                client,
                owner,
                slug,
                "push/objects",
                {"objects": to_send[start : start + 400]},
                token,
            )
        )
    bundle = {"commits": bundle_commits[::-1], "snapshots": bundle_snapshots, "objects": []}
    return await call(
        client, owner, slug, "push", {"bundle": bundle, "branch": branch, "force": force}, token
    )


class PushedRepo(NamedTuple):
    owner: str
    slug: str
    token: str
    repo_id: str


async def push_vector(
    hub: Hub, *, branches: Sequence[str] = ("main",), private: bool = False
) -> PushedRepo:
    """A new repo holding the real client's vector, its `branches` pushed the way muse does."""
    owner, slug, token = await hub.create_repo(private=private)
    for branch in branches:
        await push_vector_branch(hub, owner, slug, token, branch)
    repo_id = decode(await call(hub.client, owner, slug, "refs", token=token))["repo_id"]
    return PushedRepo(owner, slug, token, repo_id)


async def push_vector_branch(hub: Hub, owner: str, slug: str, token: str, branch: str) -> None:
    """Push the vector's `branch` (`main` or `chorus`) to the repo, the way muse does."""
    vector = load_vector()
    decode(
        await push_records(
            hub.client,
            owner,
            slug,
            token,
            branch=branch,
            tip=VECTOR_HEADS[branch],
            commits=vector["commits"],
            snapshots=vector["snapshots"],
            objects=vector["objects"],
        )
    )


def build_reading_slowly(hub: Hub, seconds_per_read: float) -> Any:
    """The hub's build with every storage read slowed and one read at a time: a build that runs
    past `stream_builds_after_seconds`, so its answer is streamed while it is written. For
    `fetcher.builds.build`."""
    slow = LatencyInjectingStorage(hub.storage, seconds_per_read)

    async def build(session, repo_id, want, have, *, watch=None):  # type: ignore[no-untyped-def]
        return await build_and_upload(
            session,
            repo_id,
            want,
            have,
            storage=slow,
            work_dir=hub.settings.work_dir,
            read_concurrency=1,
            watch=watch,
        )

    return build
