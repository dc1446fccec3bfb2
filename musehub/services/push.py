"""Push: objects first (`/filter-objects`, `/presign`, `/push/objects`), then `/push`, which
stores commits and snapshots and moves the branch in one transaction, or changes nothing."""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgpack
from sqlalchemy import ColumnElement, Text, any_, bindparam, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import QueryableAttribute

from musehub.db.models import Branch, Commit, Repo, Snapshot, StoredObject
from musehub.db.statistics import ANALYZE_AFTER_NEW_COMMITS, refresh_history_statistics
from musehub.mpack.records import RecordError, validate_commit, validate_object, validate_snapshot
from musehub.names import branch_name_problem
from musehub.services import history
from musehub.services.errors import BadRequest, Conflict
from musehub.services.keys import object_key, upload_key
from musehub.services.repos import branch_heads
from musehub.storage import ObjectNotFound, ObjectStorage

STORE_CONCURRENCY = 16


@dataclass(frozen=True)
class PushOutcome:
    branch: str
    old_head: str | None
    new_head: str
    new_commits: int
    branch_heads: dict[str, str]

    @property
    def message(self) -> str:
        if self.old_head == self.new_head:
            return f"{self.branch}: already up to date at {self.new_head[:12]}"
        before = self.old_head[:12] if self.old_head else "(new branch)"
        return f"{self.branch}: {before} -> {self.new_head[:12]} ({self.new_commits} new commits)"


def one_of(column: QueryableAttribute[str], ids: Iterable[str]) -> ColumnElement[bool]:
    """`column = ANY(:ids)` with the ids as one text[] parameter: `IN (...)` binds one parameter
    per id, and the driver takes at most 32,767 per statement (/filter-objects takes 200,000)."""
    return column == any_(bindparam(None, list(ids), type_=ARRAY(Text)))


async def missing_object_ids(session: AsyncSession, repo_id: str, ids: Sequence[str]) -> list[str]:
    """The ids this repo does not hold yet, in the order asked, without repeats."""
    asked = list(dict.fromkeys(ids))
    if not asked:
        return []
    result = await session.execute(
        select(StoredObject.object_id).where(
            StoredObject.repo_id == repo_id, one_of(StoredObject.object_id, asked)
        )
    )
    held = set(result.scalars())
    return [i for i in asked if i not in held]


async def presign_uploads(
    session: AsyncSession, storage: ObjectStorage, repo_id: str, ids: Sequence[str], ttl: int
) -> dict[str, str]:
    """PUT URLs for the objects this repo still lacks. They point at a staging key: the bytes
    become an object only after `/push` has checked they hash to the id."""
    urls: dict[str, str] = {}
    for n, oid in enumerate(await missing_object_ids(session, repo_id, ids), 1):
        # Signing is local CPU work: a loop is 3x faster than a task per id (200,000: 1.8 s vs
        # 5 s), and a yield every 1,000 ids keeps this process answering other requests.
        urls[oid] = await storage.presign_put(upload_key(repo_id, oid), ttl)
        if n % 1000 == 0:
            await asyncio.sleep(0)
    return urls


async def store_objects(
    session: AsyncSession, storage: ObjectStorage, repo_id: str, raw_objects: Iterable[object]
) -> tuple[int, int]:
    """Verify and store `{object_id, content}` records; return (stored, skipped). Bytes go to
    storage before the row is committed, so a row never points at nothing."""
    verified: dict[str, bytes] = {}
    for raw in raw_objects:
        try:
            oid, content = validate_object(raw)
        except RecordError as exc:
            raise BadRequest(str(exc)) from None
        verified[oid] = content
    if not verified:
        return 0, 0
    missing = await missing_object_ids(session, repo_id, list(verified))
    limit = asyncio.Semaphore(STORE_CONCURRENCY)

    async def put(oid: str) -> None:
        async with limit:
            await storage.put(object_key(repo_id, oid), verified[oid])

    await asyncio.gather(*(put(oid) for oid in missing))
    await _insert_object_rows(session, repo_id, {oid: len(verified[oid]) for oid in missing})
    await session.commit()
    return len(missing), len(verified) - len(missing)


async def _insert_object_rows(
    session: AsyncSession, repo_id: str, sizes: Mapping[str, int]
) -> None:
    if not sizes:
        return
    rows = [
        {
            "repo_id": repo_id,
            "object_id": oid,
            "size": size,
            "storage_key": object_key(repo_id, oid),
        }
        for oid, size in sizes.items()
    ]
    for chunk in _chunks(rows):
        await session.execute(insert(StoredObject).values(chunk).on_conflict_do_nothing())


async def ingest_uploads(
    session: AsyncSession, storage: ObjectStorage, repo_id: str, ids: Sequence[str], work_dir: Path
) -> list[str]:
    """Turn presigned uploads of `ids` into objects once their bytes hash to their ids.
    Returns the ids that were not uploaded (or whose bytes were wrong, which are discarded).

    Several at a time: each is a read, a write and a delete, three round trips to the store, and
    one after another they added up to minutes on a push of thousands of large objects to a
    distant store (the client gives up on a `/push` silent for 60 s)."""
    limit = asyncio.Semaphore(STORE_CONCURRENCY)

    async def ingest(oid: str) -> int | None:
        async with limit:
            return await _ingest_one(storage, repo_id, oid, work_dir)

    found = await asyncio.gather(*(ingest(oid) for oid in ids))
    sizes = {oid: size for oid, size in zip(ids, found, strict=True) if size is not None}
    await _insert_object_rows(session, repo_id, sizes)
    return [oid for oid, size in zip(ids, found, strict=True) if size is None]


async def _ingest_one(storage: ObjectStorage, repo_id: str, oid: str, work_dir: Path) -> int | None:
    staged = upload_key(repo_id, oid)
    digest = hashlib.sha256()
    size = 0
    with tempfile.NamedTemporaryFile(dir=work_dir, prefix="upload-") as spool:
        try:
            async for chunk in storage.stream(staged):
                digest.update(chunk)
                spool.write(chunk)
                size += len(chunk)
        except ObjectNotFound:
            return None
        spool.flush()
        if digest.hexdigest() != oid:
            await storage.delete(staged)
            return None
        await storage.put_file(object_key(repo_id, oid), Path(spool.name))
    await storage.delete(staged)
    return size


@dataclass(frozen=True)
class PushRequest:
    commits: list[dict[str, Any]]
    snapshots: list[dict[str, Any]]
    objects: list[object]
    branch: str
    force: bool


def parse_push(body: Mapping[str, Any]) -> PushRequest:
    bundle = body.get("bundle")
    if not isinstance(bundle, dict):
        raise BadRequest("push needs a 'bundle' map with 'commits', 'snapshots' and 'objects'")
    branch = body.get("branch")
    if not isinstance(branch, str):
        raise BadRequest(f"'branch' must be a branch name (a string), got {_show(branch)}")
    problem = branch_name_problem(branch)
    if problem is not None:
        raise BadRequest(f"branch name {_show(branch)} is refused: it {problem}")
    force = body.get("force", False)
    if not isinstance(force, bool):
        raise BadRequest("'force' must be true or false")
    lists = {}
    for name in ("commits", "snapshots", "objects"):
        value = bundle.get(name) or []
        if not isinstance(value, list):
            raise BadRequest(f"bundle field '{name}' must be a list")
        lists[name] = value
    try:
        commits = [validate_commit(c) for c in lists["commits"]]
        snapshots = [validate_snapshot(s) for s in lists["snapshots"]]
    except RecordError as exc:
        raise BadRequest(str(exc)) from None
    return PushRequest(commits, snapshots, lists["objects"], branch, force)


def find_tip(commits: Sequence[Mapping[str, Any]], branch: str) -> str:
    """The pushed branch's new tip: the bundle commit no other bundle commit names as a parent."""
    named = {c.get(f) for c in commits for f in ("parent_commit_id", "parent2_commit_id")}
    tips = [c for c in commits if c["commit_id"] not in named]
    if len(tips) > 1:
        tips = [c for c in tips if c.get("branch") == branch] or tips
    if len(tips) != 1:
        ids = ", ".join(sorted(c["commit_id"][:12] for c in tips))
        raise BadRequest(
            f"the bundle has {len(tips)} unrelated tips ({ids}); push one branch at a time"
        )
    return str(tips[0]["commit_id"])


async def apply_push(
    session: AsyncSession, storage: ObjectStorage, repo: Repo, request: PushRequest, work_dir: Path
) -> PushOutcome:
    """Check everything first, then store records and move the branch in one transaction."""
    await store_objects(session, storage, repo.repo_id, request.objects)
    if not request.commits:
        heads = await branch_heads(session, repo.repo_id)
        if request.branch not in heads:
            raise BadRequest(
                f"nothing to push: the bundle has no commits and {request.branch} does not exist"
            )
        head = heads[request.branch]
        return PushOutcome(request.branch, head, head, 0, heads)
    tip = find_tip(request.commits, request.branch)
    await _check_snapshots_complete(session, storage, repo.repo_id, request, work_dir)
    await _check_commits_complete(session, repo.repo_id, request)
    await session.commit()

    # Serialise pushes to one branch (the row may not exist yet, so lock the name, not the row).
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
        {"key": f"push/{repo.repo_id}/{request.branch}"},
    )
    new_commits = await _insert_records(session, repo.repo_id, request)
    if new_commits >= ANALYZE_AFTER_NEW_COMMITS:
        await refresh_history_statistics(session)
    old_head = await session.scalar(
        select(Branch.head_commit_id).where(
            Branch.repo_id == repo.repo_id, Branch.name == request.branch
        )
    )
    if old_head is not None and old_head != tip and not request.force:
        if not await history.is_ancestor(session, repo.repo_id, old_head, tip):
            await session.rollback()
            raise Conflict(
                f"non-fast-forward push to {request.branch}: the remote head {old_head[:12]} "
                "is not an ancestor of yours; pull and merge first, or push with --force"
            )
    await _move_branch(session, repo, request.branch, tip, is_new=old_head is None)
    await session.commit()
    heads = await branch_heads(session, repo.repo_id)
    return PushOutcome(request.branch, old_head, tip, new_commits, heads)


async def _check_snapshots_complete(
    session: AsyncSession,
    storage: ObjectStorage,
    repo_id: str,
    request: PushRequest,
    work_dir: Path,
) -> None:
    needed = {
        oid: (s["snapshot_id"], path)
        for s in request.snapshots
        for path, oid in s["manifest"].items()
    }
    missing = await missing_object_ids(session, repo_id, list(needed))
    absent = await ingest_uploads(session, storage, repo_id, missing, work_dir) if missing else []
    # The uploads that checked out are objects now, kept even if the push is refused: their
    # staged copies are gone, so a rollback would make the client upload them again.
    await session.commit()
    if absent:
        snapshot, path = needed[absent[0]]
        raise BadRequest(
            f"object {absent[0]} ({path!r} in snapshot {snapshot[:12]}) was never uploaded; "
            f"{len(absent)} object(s) missing: send them with /push/objects first"
        )


async def _check_commits_complete(
    session: AsyncSession, repo_id: str, request: PushRequest
) -> None:
    in_bundle = {c["commit_id"] for c in request.commits}
    parents = {
        p
        for c in request.commits
        for p in (c.get("parent_commit_id"), c.get("parent2_commit_id"))
        if p
    } - in_bundle
    unknown_parents = parents - await history.existing_commit_ids(session, repo_id, list(parents))
    if unknown_parents:
        raise BadRequest(
            f"parent commit {sorted(unknown_parents)[0]} is neither in the bundle nor on the hub; "
            "push the full history"
        )
    snapshots = {s["snapshot_id"] for s in request.snapshots}
    referenced = {c["snapshot_id"] for c in request.commits} - snapshots
    if referenced:
        result = await session.execute(
            select(Snapshot.snapshot_id).where(
                Snapshot.repo_id == repo_id, one_of(Snapshot.snapshot_id, referenced)
            )
        )
        unknown = referenced - set(result.scalars())
        if unknown:
            raise BadRequest(
                f"snapshot {sorted(unknown)[0]} is named by a commit but is neither in the bundle "
                "nor on the hub"
            )


async def _insert_records(session: AsyncSession, repo_id: str, request: PushRequest) -> int:
    snapshot_rows = [
        {
            "repo_id": repo_id,
            "snapshot_id": s["snapshot_id"],
            "manifest": s["manifest"],
            "record": _pack(s),
        }
        for s in request.snapshots
    ]
    for chunk in _chunks(snapshot_rows):
        await session.execute(insert(Snapshot).values(chunk).on_conflict_do_nothing())
    commit_rows = [
        {
            "repo_id": repo_id,
            "commit_id": c["commit_id"],
            "snapshot_id": c["snapshot_id"],
            "parent_commit_id": c.get("parent_commit_id"),
            "parent2_commit_id": c.get("parent2_commit_id"),
            "record": _pack(c),
        }
        for c in request.commits
    ]
    inserted = 0
    for chunk in _chunks(commit_rows):
        result = await session.execute(
            insert(Commit).values(chunk).on_conflict_do_nothing().returning(Commit.commit_id)
        )
        inserted += len(result.all())
    return inserted


def _chunks(rows: list[dict[str, Any]], size: int = 1000) -> Iterable[list[dict[str, Any]]]:
    """PostgreSQL takes at most 32,767 bind parameters per statement."""
    return (rows[i : i + size] for i in range(0, len(rows), size))


async def _move_branch(
    session: AsyncSession, repo: Repo, branch: str, tip: str, *, is_new: bool
) -> None:
    now = datetime.now(UTC)
    await session.execute(
        insert(Branch)
        .values(repo_id=repo.repo_id, name=branch, head_commit_id=tip, updated_at=now)
        .on_conflict_do_update(
            index_elements=[Branch.repo_id, Branch.name],
            set_={"head_commit_id": tip, "updated_at": now},
        )
    )
    values: dict[str, Any] = {"pushed_at": now}
    if is_new and not await session.scalar(
        text("SELECT EXISTS (SELECT 1 FROM musehub_branches WHERE repo_id = :r AND name <> :b)"),
        {"r": repo.repo_id, "b": branch},
    ):
        values["default_branch"] = branch  # the first branch pushed becomes the default
    await session.execute(update(Repo).where(Repo.repo_id == repo.repo_id).values(**values))


def _show(value: object) -> str:
    """A client's value in a message: repr escapes what does not print, so it stays one line."""
    text = repr(value)
    return text if len(text) <= 70 else text[:67] + "..."


def _pack(record: Mapping[str, Any]) -> bytes:
    return msgpack.packb(record, use_bin_type=True)  # type: ignore[no-any-return]
