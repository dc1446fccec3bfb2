"""``muse push``: send a branch's commits, snapshots and objects to a remote.

Sequence (docs/wire-protocol.md): ``GET /refs`` → ``POST /filter-objects`` → ``POST /presign``
(only for missing objects over 64 KiB; raw ``PUT`` to each URL) → ``POST /push/objects``
chunks for the rest → ``POST /push`` with ``{bundle: {commits (tip-first), snapshots,
objects: []}, branch, force}``. ``/filter-objects`` and ``/presign`` are optional: a 404 falls
back to "everything is missing" and "send everything inline".
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from musehub.client.errors import PushRejected, RemoteError
from musehub.client.wire import PARALLEL_REQUESTS, MuseRemote, Record

PRESIGN_THRESHOLD = 64 * 1024

ObjectSource = Mapping[str, bytes] | Callable[[str], bytes]


async def push_repository(
    remote: MuseRemote,
    commits: Sequence[Mapping[str, Any]],
    snapshots: Mapping[str, Mapping[str, Any]],
    objects: ObjectSource,
    branch: str,
    force: bool = False,
    *,
    object_sizes: Mapping[str, int] | None = None,
) -> Record:
    """Push ``commits`` (tip-first) to ``branch``; return the server's ``/push`` answer.

    ``snapshots`` maps snapshot id to SnapshotDict; ``objects`` maps object id to bytes or is a
    loader called once per object sent; ``object_sizes`` spares the loader a call just to learn
    whether an object is large. Raises ``PushRejected`` on ``ok: false`` or HTTP 409.
    """
    load = objects.__getitem__ if isinstance(objects, Mapping) else objects
    refs = await remote.refs()
    to_send = _not_on_remote(commits, refs.branch_heads.get(branch))
    if not to_send:
        return {"ok": True, "message": "Everything up-to-date", "branch_heads": refs.branch_heads}
    bundle_snapshots = _snapshots_for(to_send, snapshots)
    object_ids = sorted(
        {oid for s in bundle_snapshots for oid in (s.get("manifest") or {}).values()}
    )

    missing = await _missing(remote, object_ids)
    size_of = object_sizes.__getitem__ if object_sizes is not None else (lambda i: len(load(i)))
    large = [i for i in missing if size_of(i) > PRESIGN_THRESHOLD]
    presigned = await _presign(remote, large) if large else {}
    await _put_presigned(remote, presigned, load)
    inline = [i for i in missing if i not in presigned]
    await remote.push_objects({"object_id": i, "content": load(i)} for i in inline)

    bundle = {"commits": [dict(c) for c in to_send], "snapshots": bundle_snapshots, "objects": []}
    try:
        answer = await remote.push(bundle, branch, force)
    except RemoteError as exc:
        if exc.status == 409:
            raise PushRejected(
                f"remote has diverged: {exc.message}; fetch and merge first, or push with force"
            ) from exc
        raise
    if answer.get("ok") is False:
        raise PushRejected(f"the remote rejected the push to {branch!r}: {answer.get('message')}")
    return answer


def _not_on_remote(
    commits: Sequence[Mapping[str, Any]], remote_head: str | None
) -> list[Mapping[str, Any]]:
    """Drop the commits the remote branch already has (those reachable from its head)."""
    by_id = {str(c["commit_id"]): c for c in commits}
    if remote_head is None or remote_head not in by_id:
        return list(commits)
    known: set[str] = set()
    stack = [remote_head]
    while stack:
        cid = stack.pop()
        if cid in known or cid not in by_id:
            continue
        known.add(cid)
        commit = by_id[cid]
        stack.extend(
            p for p in (commit.get("parent_commit_id"), commit.get("parent2_commit_id")) if p
        )
    return [c for c in commits if str(c["commit_id"]) not in known]


def _snapshots_for(
    commits: Sequence[Mapping[str, Any]], snapshots: Mapping[str, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for commit in commits:
        sid = str(commit["snapshot_id"])
        if sid not in out:
            if sid not in snapshots:
                raise ValueError(f"snapshot {sid} of commit {commit['commit_id']} was not given")
            out[sid] = dict(snapshots[sid])
    return list(out.values())


async def _missing(remote: MuseRemote, object_ids: list[str]) -> list[str]:
    if not object_ids:
        return []
    try:
        missing = set(await remote.filter_objects(object_ids))
    except RemoteError as exc:
        if exc.status != 404:
            raise
        return object_ids  # optional endpoint: assume the remote has nothing
    return [i for i in object_ids if i in missing]


async def _presign(remote: MuseRemote, object_ids: list[str]) -> dict[str, str]:
    try:
        answer = await remote.presign_put(object_ids)
    except RemoteError as exc:
        if exc.status != 404:
            raise
        return {}  # optional endpoint: send everything inline
    return {i: url for i, url in answer.presigned.items() if i in set(object_ids)}


async def _put_presigned(
    remote: MuseRemote, presigned: Mapping[str, str], load: Callable[[str], bytes]
) -> None:
    """PUT each large object to its URL, a few at a time so memory stays bounded."""
    pending: Iterator[tuple[str, str]] = iter(sorted(presigned.items()))

    async def worker() -> None:
        while True:
            item = next(pending, None)  # no await in between: workers never take the same item
            if item is None:
                return
            object_id, url = item
            await remote.put_presigned(url, load(object_id))

    await asyncio.gather(*(worker() for _ in range(min(PARALLEL_REQUESTS, len(presigned)))))
