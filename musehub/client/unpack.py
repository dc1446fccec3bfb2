"""Write a pack into a ``.muse`` directory while it is decoded, checking every id.

The pack is read as a stream (a file, or the download itself through ``pipe.BytePipe``), one
record at a time, and each file is handed to a ``FileWriter`` thread:

- every object's content must hash to its id (the muse client's rule);
- every snapshot's id must recompute from its manifest, every commit's from its parents,
  snapshot, message and time (the formulas of docs/wire-protocol.md, as the hub checks a push);
- the head commit's tree is checked out on the way: its snapshot comes before the objects in a
  hub pack, so each object that the tree names is written to the working tree from memory when
  it arrives; paths it names that were not written that way (an object in an earlier part of a
  chain than the head's snapshot, or a pack in another order) are copied from the object store
  at the end, by the writer's threads.

A chain's parts are decoded one after the other into the same repository (``unpack_streams``),
as sets: a record that two parts hold is written and counted once. The head's snapshot may be in
an earlier part than the head commit (a commit whose tree an older commit had): it is then read
back from the store at the end.

A pack's own ``branch_heads`` are skipped: refs come from ``/refs``, as the muse client takes
them. Memory holds one record plus the writer's bounded queue, whatever the pack's size.
"""

from __future__ import annotations

import functools
import hashlib
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from musehub.client.layout import (
    CheckoutReport,
    LayoutError,
    MuseDir,
    safe_work_path,
    write_file,
)
from musehub.client.writer import FileWriter
from musehub.mpack.errors import MPackFormatError
from musehub.mpack.ids import NUL, commit_id
from musehub.mpack.reader import iter_mpack

_RECORD_WEIGHT = 1024
_MANIFEST_ENTRY_WEIGHT = 160  # a path and an id, as Python objects


class PackError(ValueError):
    """The pack is malformed or a record does not hash to its id."""


@dataclass
class UnpackCounts:
    commits: int = 0
    snapshots: int = 0
    objects: int = 0


@dataclass
class Unpacked:
    counts: UnpackCounts
    checkout: CheckoutReport = field(default_factory=CheckoutReport)


def unpack_into(pack: Path, repo: MuseDir) -> UnpackCounts:
    """Unpack the pack file ``pack`` into ``repo`` (no checkout)."""
    with pack.open("rb") as fp:
        return unpack_stream(fp, repo).counts


def unpack_stream(fp: BinaryIO, repo: MuseDir, *, head: str | None = None) -> Unpacked:
    """Decode the pack read from ``fp`` into ``repo``; check out ``head`` too when given."""
    return unpack_streams([fp], repo, head=head)


def unpack_streams(
    packs: Iterable[BinaryIO], repo: MuseDir, *, head: str | None = None
) -> Unpacked:
    """Decode the packs (a chain's parts, in order) into ``repo``; check out ``head`` too.

    On any failure the queued writes are dropped and the running ones finished before it
    raises, so nothing writes into ``repo`` afterwards.
    """
    files = FileWriter()
    unpacker = _Unpacker(repo, files, head)
    try:
        for fp in packs:
            for item in iter_mpack(fp):
                unpacker.take(item.kind, item.value)
        files.close()
        unpacker.finish_checkout()
    except (MPackFormatError, LayoutError) as exc:
        raise PackError(str(exc)) from exc
    finally:
        files.abort()
    return Unpacked(unpacker.counts, unpacker.report)


class _Unpacker:
    def __init__(self, repo: MuseDir, writer: FileWriter, head: str | None) -> None:
        self.repo = repo
        self.writer = writer
        self.counts = UnpackCounts()
        self.report = CheckoutReport()
        self._head = head
        self._head_snapshot: str | None = None
        self._manifest: dict[str, str] | None = None
        self._paths_of: dict[str, list[Path]] = {}  # object id -> working-tree paths
        self._written: set[str] = set()  # object ids whose paths were checked out
        self._seen: set[str] = set()  # ids taken: a chain's parts may repeat a record

    def take(self, kind: str, value: dict[str, Any]) -> None:
        if kind not in ("object", "snapshot", "commit"):
            return
        record_id = value.get(f"{kind}_id")
        if isinstance(record_id, str):
            if record_id in self._seen:
                return  # already verified and written from an earlier part
            self._seen.add(record_id)
        if kind == "object":
            self._object(value)
        elif kind == "snapshot":
            self._snapshot(value)
        else:
            self._commit(value)

    def _commit(self, commit: dict[str, Any]) -> None:
        verify_commit(commit)
        if commit["commit_id"] == self._head:
            self._head_snapshot = commit["snapshot_id"]
        self.writer.submit(lambda: self.repo.write_commit(commit), _RECORD_WEIGHT)
        self.counts.commits += 1

    def _snapshot(self, snapshot: dict[str, Any]) -> None:
        manifest = verify_snapshot(snapshot)
        if snapshot["snapshot_id"] == self._head_snapshot and self._manifest is None:
            self._plan_checkout(manifest)
        weight = _RECORD_WEIGHT + _MANIFEST_ENTRY_WEIGHT * len(manifest)
        self.writer.submit(lambda: self.repo.write_snapshot(snapshot), weight)
        self.counts.snapshots += 1

    def _object(self, obj: dict[str, Any]) -> None:
        object_id, content = str(obj["object_id"]), obj["content"]
        paths = self._paths_of.get(object_id, ())
        if paths:
            self._written.add(object_id)
        self.writer.submit(lambda: self._store(object_id, content, paths), len(content))
        self.counts.objects += 1

    def _store(self, object_id: str, content: bytes, paths: list[Path] | tuple[()]) -> None:
        verify_object(object_id, content)
        self.repo.write_new_object(object_id, content)
        for path in paths:
            write_file(path, content)  # its folder was made when the checkout was planned

    def _plan_checkout(self, manifest: dict[str, str]) -> None:
        self._manifest = manifest
        folders: set[Path] = set()
        for rel, object_id in sorted(manifest.items()):
            dest = safe_work_path(self.repo.root, rel)
            if dest is None:
                self.report.skipped_paths.append(rel)
                continue
            self._paths_of.setdefault(object_id, []).append(dest)
            folders.add(dest.parent)
            self.report.files += 1
        for folder in sorted(folders):  # once each, not once per file on the writer threads
            folder.mkdir(parents=True, exist_ok=True)

    def finish_checkout(self) -> None:
        """Write the head's paths no object brought along (their object came first), once
        every queued write is done."""
        if self._head is None:
            return
        if self._head_snapshot is None:
            raise LayoutError(f"commit {self._head} is not in the pack")
        if self._manifest is None:  # the snapshot came in a part before the head commit
            snapshot = self.repo.read_snapshot(self._head_snapshot)
            if snapshot is None:
                raise LayoutError(
                    f"snapshot {self._head_snapshot} of {self._head} is not in the pack"
                )
            self._plan_checkout(verify_snapshot(snapshot))
        copies = FileWriter()
        try:
            for object_id, paths in self._paths_of.items():
                if object_id in self._written:
                    continue
                src = self.repo.object_path(object_id)
                if not src.is_file():
                    raise LayoutError(f"object {object_id} for {paths[0]} is not in the pack")
                copies.submit(functools.partial(_copy_work_files, src, paths))
            copies.close()
        finally:
            copies.abort()


def _copy_work_files(src: Path, paths: list[Path]) -> None:
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, path)  # in the kernel where it can (copy_file_range)


def verify_object(object_id: str, content: bytes) -> None:
    """The muse client's rule: an object is accepted only if sha256(content) is its id."""
    actual = hashlib.sha256(content).hexdigest()
    if actual != object_id:
        raise PackError(f"object {object_id} has content hashing to {actual}: the pack is corrupt")


def verify_snapshot(snapshot: dict[str, Any]) -> dict[str, str]:
    """The snapshot's manifest, once its id recomputes from it."""
    manifest = snapshot.get("manifest")
    if (
        not isinstance(manifest, dict)
        or not set(map(type, manifest)) <= {str}
        or not set(map(type, manifest.values())) <= {str}
    ):
        raise PackError(f"snapshot {snapshot.get('snapshot_id')!r} has no map of path to id")
    if _snapshot_id(manifest) != snapshot.get("snapshot_id"):
        raise PackError(
            f"snapshot {snapshot.get('snapshot_id')!r} does not match its manifest: the pack "
            "is corrupt"
        )
    return manifest


def _snapshot_id(manifest: dict[str, str]) -> str:
    """``ids.snapshot_id`` (sorted ``path NUL object_id`` joined by NUL), with the entries built
    in C: a gabriel-sized pack has 200,000 of them."""
    entries = sorted(map(NUL.join, manifest.items()))
    return hashlib.sha256(NUL.join(entries).encode("utf-8")).hexdigest()


def verify_commit(commit: dict[str, Any]) -> None:
    fields = ("snapshot_id", "message", "committed_at")
    parents = [commit.get("parent_commit_id"), commit.get("parent2_commit_id")]
    if not all(isinstance(commit.get(f), str) for f in fields) or not all(
        p is None or isinstance(p, str) for p in parents
    ):
        raise PackError(f"commit {commit.get('commit_id')!r} lacks its ids, message or time")
    expected = commit_id(
        [p for p in parents if p], commit["snapshot_id"], commit["message"], commit["committed_at"]
    )
    if expected != commit.get("commit_id"):
        raise PackError(
            f"commit {commit.get('commit_id')!r} does not match its contents (they hash to "
            f"{expected}): the pack is corrupt"
        )
