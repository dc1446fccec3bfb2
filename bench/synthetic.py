"""Repositories the benchmarks push, beyond the synth presets.

`long_history` is for "answer time vs history length": `generate_repo` grows the tree by a new
path now and then, so at 100k commits its snapshots would hold thousands of entries and the
push would be gigabytes of manifests. Here the tree stays `files` paths wide: every commit
replaces one file with a fresh small blob, so size grows linearly with the commit count.
A last commit on `dev` makes the clone's want set two heads, as for a real repo.

`next_commit` is the one-commit push the chain benchmarks repeat on top of any of these."""

from __future__ import annotations

import datetime
import random
import uuid

from musehub.mpack.ids import commit_id, object_id, snapshot_id
from musehub.synth import SynthRepo
from musehub.synth.blobs import BlobFactory
from musehub.synth.repo import Record

_START = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)


def long_history(commits: int, *, files: int = 4, blob_size: int = 96, seed: int = 7) -> SynthRepo:
    """`commits` commits (the last on `dev`), one new blob each, a tree of `files` paths."""
    if commits < 2 or files < 1:
        raise ValueError("need at least 2 commits and 1 file")
    blobs = BlobFactory(files + commits - 1, blob_size, seed, sigma=0.3)
    repo_id = str(uuid.UUID(int=seed, version=4))
    tree = {f"src/file_{i}.txt": blobs.ids[i] for i in range(files)}
    records: list[Record] = []
    snapshots: dict[str, Record] = {}
    heads: dict[str, str] = {}
    parent: str | None = None
    for n in range(commits):
        branch = "dev" if n == commits - 1 else "main"
        if n > 0:
            tree = dict(tree)
            tree[f"src/file_{n % files}.txt"] = blobs.ids[files + n - 1]
        when = (_START + datetime.timedelta(minutes=n)).isoformat(timespec="microseconds")
        sid = snapshot_id(tree)
        snapshots[sid] = {"snapshot_id": sid, "manifest": tree, "created_at": when}
        message = f"change {n}"
        parents = [parent] if parent else []
        cid = commit_id(parents, sid, message, when)
        records.append(_commit(cid, repo_id, branch, sid, message, when, parent))
        heads[branch] = cid
        if branch == "main":
            parent = cid
    return SynthRepo(repo_id, "code", "main", records, snapshots, heads, blobs)


def big_blobs(
    pack_bytes: int, *, blob_size: int = 1 << 20, commits: int = 8, seed: int = 11
) -> SynthRepo:
    """About `pack_bytes` of ~`blob_size` blobs over a few commits, each adding new files, so
    every blob is in the head's tree and in the clone pack: for memory vs pack size."""
    count = max(commits, pack_bytes // blob_size)
    blobs = BlobFactory(count, blob_size, seed, sigma=0.4)
    repo_id = str(uuid.UUID(int=seed, version=4))
    tree: dict[str, str] = {}
    records: list[Record] = []
    snapshots: dict[str, Record] = {}
    parent: str | None = None
    for n in range(commits):
        tree = dict(tree)
        for i in range(n * count // commits, (n + 1) * count // commits):
            tree[f"assets/blob_{i}.bin"] = blobs.ids[i]
        when = (_START + datetime.timedelta(hours=n)).isoformat(timespec="microseconds")
        sid = snapshot_id(tree)
        snapshots[sid] = {"snapshot_id": sid, "manifest": tree, "created_at": when}
        cid = commit_id([parent] if parent else [], sid, f"add assets {n}", when)
        records.append(_commit(cid, repo_id, "main", sid, f"add assets {n}", when, parent))
        parent = cid
    assert parent is not None
    return SynthRepo(repo_id, "code", "main", records, snapshots, {"main": parent}, blobs)


def next_commit(
    parent: Record, manifest: dict[str, str], n: int, *, blob_size: int, seed: int = 13
) -> tuple[Record, Record, dict[str, bytes]]:
    """One commit on top of `parent` (same branch) whose tree is `manifest` with one file
    (chosen by `n`) replaced by a fresh blob of `blob_size` bytes: what a one-commit push adds.
    Returns (commit, snapshot, {object_id: bytes})."""
    paths = sorted(manifest)
    path = paths[n % len(paths)] if paths else "src/new.txt"
    header = f"# chains bench {seed}:{n}\n".encode()
    size = max(0, blob_size - len(header))
    content = (
        header + random.Random(f"chains:{seed}:{n}").randbytes(size // 2 + 1).hex()[:size].encode()
    )
    oid = object_id(content)
    tree = {**manifest, path: oid}
    sid = snapshot_id(tree)
    when = datetime.datetime.now(datetime.UTC).isoformat(timespec="microseconds")
    parent_id = str(parent["commit_id"])
    message = f"one more change {n}"
    cid = commit_id([parent_id], sid, message, when)
    record = _commit(
        cid, str(parent["repo_id"]), str(parent["branch"]), sid, message, when, parent_id
    )
    return record, {"snapshot_id": sid, "manifest": tree, "created_at": when}, {oid: content}


def _commit(
    cid: str, repo_id: str, branch: str, sid: str, message: str, when: str, parent: str | None
) -> Record:
    return {  # the 22 CommitDict keys, in the muse client's order
        "commit_id": cid,
        "repo_id": repo_id,
        "branch": branch,
        "snapshot_id": sid,
        "message": message,
        "committed_at": when,
        "parent_commit_id": parent,
        "parent2_commit_id": None,
        "author": "bench",
        "metadata": {},
        "structured_delta": None,
        "sem_ver_bump": "none",
        "breaking_changes": [],
        "agent_id": "",
        "model_id": "",
        "toolchain_id": "",
        "prompt_hash": "",
        "signature": "",
        "signer_key_id": "",
        "format_version": 5,
        "reviewed_by": [],
        "test_runs": 0,
    }
