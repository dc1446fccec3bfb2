"""The one implementation of the fetch-mpack build, in steps an activity can call one by one:
plan (which records), assemble (stream them into a file, blobs read with bounded concurrency:
`blob_reads`),
upload (under the pack's content address). `build_and_upload`, the synchronous build a fetch
falls back to, runs them back to back."""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from musehub.mpack.chain import StoredPart, joined_sections, joined_size, joined_stream
from musehub.mpack.sink import ThreadedPackSink
from musehub.mpack.writer import MPackWriter, PackDigest
from musehub.services import history
from musehub.services.blob_reads import (
    BlobMissing,
    BlobReader,
    PackObject,
    hedged_reader,
    read_as_completed,
    read_in_order,
    storage_blob_reader,
)
from musehub.services.errors import NotFound
from musehub.services.keys import mpack_key
from musehub.services.mpack_cache import hold_mpack_object
from musehub.storage import ObjectStorage

RECORD_BATCH = 1000


@dataclass(frozen=True)
class FetchPlan:
    repo_id: str
    commit_ids: list[str]
    snapshot_ids: list[str]
    objects: list[PackObject]


@dataclass(frozen=True)
class BuiltMPack:
    """A pack now in storage under `key`, and what a cache row records of it."""

    key: str
    digest: PackDigest
    commit_count: int
    object_count: int
    # What it holds besides commits, for a chain's later top-ups to leave out (`chains.
    # record_held`).
    snapshot_ids: Sequence[str] = ()
    object_ids: Sequence[str] = ()


Progress = Callable[[int, int], None]


class PackWatch(Protocol):
    """Who reads a synchronous build's pack while it is written (`growing_pack.GrowingPack`)."""

    def attach(self, path: Path) -> None:
        """The pack's temp file exists (nothing written yet)."""

    def written(self, size: int) -> None:
        """The pack is whole in that file: `size` bytes (before its upload and record)."""


async def plan_fetch(
    session: AsyncSession, repo_id: str, want: Sequence[str], have: Sequence[str]
) -> FetchPlan:
    """What a fetch of `want` minus `have` must send. Snapshots and objects already held at the
    boundary (the `have` commits the new ones build on) are left out."""
    await check_wanted(session, repo_id, want)
    return await _plan_of_known(session, repo_id, want, have)


async def check_wanted(session: AsyncSession, repo_id: str, want: Sequence[str]) -> None:
    """NotFound unless every wanted commit is in the repository (one quick query)."""
    unknown = set(want) - await history.existing_commit_ids(session, repo_id, want)
    if unknown:
        raise NotFound(
            f"commit {sorted(unknown)[0]} is not in this repository (refresh with /refs)"
        )


async def _plan_of_known(
    session: AsyncSession, repo_id: str, want: Sequence[str], have: Sequence[str]
) -> FetchPlan:
    commit_ids = await history.missing_commit_ids(session, repo_id, want, have)
    return await plan_of_commits(session, repo_id, commit_ids)


async def plan_of_commits(session: AsyncSession, repo_id: str, commit_ids: list[str]) -> FetchPlan:
    """The plan that sends `commit_ids` (sorted; a closure less what the client holds) with
    their snapshots and objects, less those of the boundary snapshots."""
    snapshot_ids = await _snapshots_of(session, repo_id, commit_ids)
    objects = await _objects_of(session, repo_id, commit_ids)
    return FetchPlan(repo_id, commit_ids, snapshot_ids, objects)


async def _snapshots_of(session: AsyncSession, repo_id: str, commit_ids: list[str]) -> list[str]:
    params = {"repo_id": repo_id, "ids": commit_ids}
    return list((await session.execute(_SNAPSHOTS_OF_CLOSURE, params)).scalars())


async def _objects_of(
    session: AsyncSession, repo_id: str, commit_ids: list[str]
) -> list[PackObject]:
    params = {"repo_id": repo_id, "ids": commit_ids}
    rows = (await session.execute(_OBJECTS_OF_CLOSURE, params)).all()
    objects = [PackObject(object_id=r[0], storage_key=r[1], size=r[2]) for r in rows]
    if any(o.storage_key is None for o in objects):
        lost = next(o.object_id for o in objects if o.storage_key is None)
        raise BlobMissing(f"object {lost} is named by a snapshot but was never stored")
    return objects


class PlanInStages:
    """A fetch's plan made one section at a time, each part just before its section is written
    (`assemble_mpack` takes it like a FetchPlan): a reader of the growing pack gets the commits
    while the snapshots are worked out, and those while the objects are, instead of silence
    for the whole plan (seconds on a big repository under load). The wanted commits are known
    to exist (`check_wanted`)."""

    def __init__(
        self, session: AsyncSession, repo_id: str, want: Sequence[str], have: Sequence[str]
    ) -> None:
        self.repo_id = repo_id
        self._session, self._want, self._have = session, want, have
        self._commit_ids: list[str] | None = None
        self._snapshot_ids: list[str] | None = None
        self._objects: list[PackObject] | None = None

    async def commit_ids(self) -> list[str]:
        if self._commit_ids is None:
            self._commit_ids = await history.missing_commit_ids(
                self._session, self.repo_id, self._want, self._have
            )
        return self._commit_ids

    async def snapshot_ids(self) -> list[str]:
        if self._snapshot_ids is None:
            self._snapshot_ids = await _snapshots_of(
                self._session, self.repo_id, await self.commit_ids()
            )
        return self._snapshot_ids

    async def objects(self) -> list[PackObject]:
        if self._objects is None:
            self._objects = await _objects_of(self._session, self.repo_id, await self.commit_ids())
        return self._objects


class _Planned:
    """A FetchPlan made already, given the way `PlanInStages` gives its parts."""

    def __init__(self, plan: FetchPlan) -> None:
        self.repo_id, self._plan = plan.repo_id, plan

    async def commit_ids(self) -> list[str]:
        return self._plan.commit_ids

    async def snapshot_ids(self) -> list[str]:
        return self._plan.snapshot_ids

    async def objects(self) -> list[PackObject]:
        return self._plan.objects


# Commits on the boundary: parents of the closure that are not in it (the client has them).
_BOUNDARY = """
closure AS MATERIALIZED (
    SELECT unnest(CAST(:ids AS text[])) AS commit_id
), closure_commits AS (
    SELECT c.commit_id, c.snapshot_id, c.parent_commit_id, c.parent2_commit_id
    FROM musehub_commits c JOIN closure x ON c.repo_id = :repo_id AND c.commit_id = x.commit_id
), boundary AS (
    -- an anti-join (hashable), not `<> ALL(array)`, which is quadratic on big closures
    SELECT DISTINCT p.parent_id AS commit_id
    FROM closure_commits c
    CROSS JOIN LATERAL (VALUES (c.parent_commit_id), (c.parent2_commit_id)) AS p(parent_id)
    WHERE p.parent_id IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM closure x WHERE x.commit_id = p.parent_id)
), boundary_snapshots AS (
    SELECT c.snapshot_id FROM musehub_commits c JOIN boundary b
      ON c.repo_id = :repo_id AND c.commit_id = b.commit_id
), closure_snapshots AS (
    SELECT DISTINCT snapshot_id FROM closure_commits
)
"""

_SNAPSHOTS_OF_CLOSURE = text(
    "WITH"
    + _BOUNDARY
    + """
SELECT snapshot_id FROM closure_snapshots
EXCEPT SELECT snapshot_id FROM boundary_snapshots
ORDER BY snapshot_id
"""
)

_OBJECTS_OF_CLOSURE = text(
    "WITH"
    + _BOUNDARY
    + """, wanted_objects AS (
    SELECT e.value AS object_id FROM musehub_snapshots s
    CROSS JOIN LATERAL jsonb_each_text(s.manifest) AS e
    WHERE s.repo_id = :repo_id AND s.snapshot_id IN (SELECT snapshot_id FROM closure_snapshots)
  EXCEPT
    SELECT e.value FROM musehub_snapshots s
    CROSS JOIN LATERAL jsonb_each_text(s.manifest) AS e
    WHERE s.repo_id = :repo_id AND s.snapshot_id IN (SELECT snapshot_id FROM boundary_snapshots)
)
SELECT w.object_id, o.storage_key, coalesce(o.size, 0)
FROM wanted_objects w
LEFT JOIN musehub_objects o ON o.repo_id = :repo_id AND o.object_id = w.object_id
ORDER BY w.object_id
"""
)


async def assemble_mpack(
    session: AsyncSession,
    plan: FetchPlan | PlanInStages,
    out: BinaryIO,
    read_blob: BlobReader,
    *,
    concurrency: int,
    on_progress: Progress | None = None,
    arrival_order: bool = False,
    writer: MPackWriter | None = None,
) -> PackDigest:
    """Stream the pack into `out`: commit and snapshot records as stored (no re-encoding), then
    every blob, read `concurrency` at a time and written in plan order as each arrives; with
    `arrival_order`, in the order the reads end (the format lets objects come in any order),
    so one slow read never holds the pack while the others go on, and a read slow past a few
    times the usual is hedged (`hedged_reader`). Arrival order gives another pack, and
    another content address, each time: for a pack streamed while it is written, not for the
    prebuild's, which a retry should find again."""
    if arrival_order:
        read_blob = hedged_reader(read_blob, concurrency=concurrency)
    reads = read_as_completed if arrival_order else read_in_order
    writer = writer or MPackWriter(out, sink=ThreadedPackSink(out))
    parts = plan if isinstance(plan, PlanInStages) else _Planned(plan)
    try:
        commit_ids = await parts.commit_ids()
        writer.begin_section("commits", len(commit_ids))
        async for record in _records(session, "musehub_commits", parts.repo_id, commit_ids):
            writer.write_packed(record)
        writer.flush()  # a reader has them while the next part of the plan is worked out
        snapshot_ids = await parts.snapshot_ids()
        writer.begin_section("snapshots", len(snapshot_ids))
        async for record in _records(session, "musehub_snapshots", parts.repo_id, snapshot_ids):
            writer.write_packed(record)
        writer.flush()
        objects = await parts.objects()
        writer.begin_section("objects", len(objects))
        done = 0
        async for obj, content in reads(objects, read_blob, concurrency=concurrency):
            if hashlib.sha256(content).hexdigest() != obj.object_id:
                raise BlobMissing(f"stored bytes of object {obj.object_id} do not hash to its id")
            writer.write_object(obj.object_id, content)
            done += 1
            if on_progress is not None:
                on_progress(done, len(objects))
        return writer.finish()
    except BaseException:
        writer.abort()
        raise


async def _stored_records(
    session: AsyncSession, table: str, id_column: str, plan: FetchPlan
) -> AsyncIterator[bytes]:
    ids = plan.commit_ids if table == "musehub_commits" else plan.snapshot_ids
    async for record in _records(session, table, plan.repo_id, ids):
        yield record


async def _records(
    session: AsyncSession, table: str, repo_id: str, ids: list[str]
) -> AsyncIterator[bytes]:
    id_column = "commit_id" if table == "musehub_commits" else "snapshot_id"
    query = text(
        f"SELECT record FROM {table} WHERE repo_id = :repo_id"
        f" AND {id_column} = ANY(CAST(:ids AS text[])) ORDER BY {id_column}"
    )
    # ids are sorted, so consecutive sorted batches keep the whole section in id order.
    for start in range(0, len(ids), RECORD_BATCH):
        batch = ids[start : start + RECORD_BATCH]
        result = await session.execute(query, {"repo_id": repo_id, "ids": batch})
        for (record,) in result.all():
            yield bytes(record)


async def upload_mpack(
    storage: ObjectStorage,
    repo_id: str,
    path: Path,
    digest: PackDigest,
    *,
    replace: bool = False,
    move: bool = False,
) -> str:
    """Upload under the pack's content address; an identical pack already there is kept, so a
    retried or repeated build never leaves a second copy. `replace` writes it anyway, which
    restarts its age: a pack no cache row names is kept by GC only while it is young. `move`:
    the caller is done with the file, so the backend may take it instead of copying it."""
    key = mpack_key(repo_id, digest.sha256)
    if replace or await storage.size(key) != digest.size:
        if move:
            await storage.move_file(key, path)
        else:
            await storage.put_file(key, path)
    return key


async def build_and_upload(
    session: AsyncSession,
    repo_id: str,
    want: Sequence[str],
    have: Sequence[str],
    *,
    storage: ObjectStorage,
    work_dir: Path,
    read_concurrency: int,
    watch: PackWatch | None = None,
) -> BuiltMPack:
    """The synchronous build: plan, assemble with blobs read straight from storage (in the
    order they arrive), upload. `watch` is told the pack's temp file as soon as it exists (a
    `GrowingPack` reads it while it is written) and when the pack is whole. The file exists,
    and the pack's first bytes are in it, before the plan is made (once the wanted commits are
    known to exist): a big repository's plan takes seconds, which a reader need not wait for.

    Before the upload it holds the pack's object lock (`mpack_cache.hold_mpack_object`) until
    the caller's transaction ends, so GC cannot delete the pack between upload and the row that
    names it. A pack no row will name (`have` given) is written again even if present: only its
    fresh age keeps GC off it while it is served."""
    await check_wanted(session, repo_id, want)
    return await _build(
        session,
        PlanInStages(session, repo_id, want, have),
        storage=storage,
        work_dir=work_dir,
        read_concurrency=read_concurrency,
        replace=bool(have),
        watch=watch,
        arrival_order=True,
    )


async def build_planned(
    session: AsyncSession,
    plan: FetchPlan,
    *,
    storage: ObjectStorage,
    work_dir: Path,
    read_concurrency: int,
    replace: bool = False,
    watch: PackWatch | None = None,
    arrival_order: bool = False,
) -> BuiltMPack:
    """`build_and_upload` of a plan made already: assemble, hold the object, upload."""
    return await _build(
        session,
        plan,
        storage=storage,
        work_dir=work_dir,
        read_concurrency=read_concurrency,
        replace=replace,
        watch=watch,
        arrival_order=arrival_order,
    )


async def _build(
    session: AsyncSession,
    plan: FetchPlan | PlanInStages,
    *,
    storage: ObjectStorage,
    work_dir: Path,
    read_concurrency: int,
    replace: bool,
    watch: PackWatch | None,
    arrival_order: bool,
) -> BuiltMPack:
    repo_id = plan.repo_id
    handle, name = tempfile.mkstemp(dir=work_dir, prefix="fetch-", suffix=".mpack")
    path = Path(name)
    try:
        if watch is not None:
            watch.attach(path)
        with os.fdopen(handle, "wb") as out:
            writer = MPackWriter(out, sink=ThreadedPackSink(out))
            writer.lead("commits")  # a reader sees the pack begin while it is planned
            digest = await assemble_mpack(
                session,
                plan,
                out,
                storage_blob_reader(storage),
                concurrency=read_concurrency,
                arrival_order=arrival_order,
                writer=writer,
            )
        if watch is not None:
            watch.written(digest.size)  # its readers need not wait for the upload
        await hold_mpack_object(session, mpack_key(repo_id, digest.sha256))
        key = await upload_mpack(storage, repo_id, path, digest, replace=replace, move=True)
    finally:
        await asyncio.to_thread(path.unlink, missing_ok=True)  # gone if the upload moved it
    commits, _, objects = digest.sections
    parts = plan if isinstance(plan, PlanInStages) else _Planned(plan)  # planned once, kept
    held = [o.object_id for o in await parts.objects()]
    return BuiltMPack(key, digest, commits.count, objects.count, await parts.snapshot_ids(), held)


async def join_and_upload(
    storage: ObjectStorage, repo_id: str, parts: Sequence[StoredPart], work_dir: Path
) -> tuple[str, PackDigest]:
    """Join stored parts into one stored pack (a chain for clients that take one URL, or a
    compacted base) by byte ranges: no blob is read and nothing is decoded. Content-addressed,
    so joining the same parts twice stores one object."""

    async def read_range(key: str, start: int, end: int) -> AsyncIterator[bytes]:
        async for chunk in storage.stream(key, start=start, end=end):
            yield chunk

    handle, name = tempfile.mkstemp(dir=work_dir, prefix="join-", suffix=".mpack")
    path = Path(name)
    sha = hashlib.sha256()
    try:
        with os.fdopen(handle, "wb") as out:
            async for chunk in joined_stream(parts, read_range):
                await asyncio.to_thread(out.write, chunk)
                sha.update(chunk)
        digest = PackDigest(joined_size(parts), sha.hexdigest(), joined_sections(parts))
        key = await upload_mpack(storage, repo_id, path, digest, move=True)
    finally:
        await asyncio.to_thread(path.unlink, missing_ok=True)
    return key, digest
