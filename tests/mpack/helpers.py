"""Records and packs for the mpack tests, built with the real id formulas."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import msgpack

from musehub.mpack.ids import commit_id, object_id, snapshot_id
from musehub.mpack.records import COMMIT_KEYS
from musehub.mpack.writer import MPackWriter, PackDigest

# Written by the real muse client 0.1.5 (vectors/README.md says what is in it).
VECTOR_PATH = Path(__file__).parent / "vectors" / "two-branches-merge.mpack"
VECTOR_SHA256 = "1bc011a01257edb72ba1298d7957e54c69eb474b05609ffdc5f04263c9a38e1f"
VECTOR_HEADS = {
    "main": "936c3ea1ee4476c086ec6489d1c880857e1fcb5edb2502b81283f0273115ccf6",
    "chorus": "22b1ff108a79b1ab77edf15f95418a1dfae4df6c40fd07dd0ab94383919f81e3",
}


def load_vector() -> dict[str, Any]:
    decoded: dict[str, Any] = msgpack.unpackb(VECTOR_PATH.read_bytes(), raw=False)
    return decoded


def make_object(content: bytes) -> dict[str, Any]:
    return {"object_id": object_id(content), "content": content}


def make_snapshot(manifest: dict[str, str]) -> dict[str, Any]:
    return {
        "snapshot_id": snapshot_id(manifest),
        "manifest": manifest,
        "created_at": "2026-11-25T20:24:20.227000+00:00",
    }


def make_commit(
    snapshot: str,
    message: str = "a commit",
    parents: tuple[str | None, str | None] = (None, None),
    **extra: Any,
) -> dict[str, Any]:
    """A full 22-key CommitDict (in the client's key order) whose commit_id recomputes."""
    committed_at = "2026-11-25T20:24:20.227429+00:00"
    record: dict[str, Any] = dict.fromkeys(COMMIT_KEYS, "")
    record.update(
        repo_id="1b55bcb5-33f8-4f81-84ce-ced225e8dc95",
        branch="main",
        snapshot_id=snapshot,
        message=message,
        committed_at=committed_at,
        parent_commit_id=parents[0],
        parent2_commit_id=parents[1],
        metadata={"k": "v"},
        structured_delta={"ops": [{"op": "insert", "position": None}], "n": 1.5},
        sem_ver_bump="minor",
        breaking_changes=["a.txt"],
        format_version=5,
        reviewed_by=["bob"],
        test_runs=3,
    )
    record.update(extra)
    record["commit_id"] = commit_id([p for p in parents if p], snapshot, message, committed_at)
    return record


def write_pack(
    commits: list[dict[str, Any]],
    snapshots: list[dict[str, Any]],
    objects: list[dict[str, Any]],
) -> tuple[bytes, PackDigest]:
    out = io.BytesIO()
    writer = MPackWriter(out)
    writer.begin_section("commits", len(commits))
    for commit in commits:
        writer.write_record(commit)
    writer.begin_section("snapshots", len(snapshots))
    for snap in snapshots:
        writer.write_record(snap)
    writer.begin_section("objects", len(objects))
    for obj in objects:
        writer.write_object(obj["object_id"], obj["content"])
    return out.getvalue(), writer.finish()


def small_repo() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Two commits (tip first, one with an unknown extra key), two snapshots, three objects."""
    objects = [make_object(b""), make_object(b"hello\n"), make_object(bytes(range(256)) * 300)]
    first = make_snapshot({"a.txt": objects[1]["object_id"], "empty": objects[0]["object_id"]})
    second = make_snapshot({**first["manifest"], "dir/big.bin": objects[2]["object_id"]})
    c1 = make_commit(first["snapshot_id"], "first")
    c2 = make_commit(second["snapshot_id"], "second", (c1["commit_id"], None), extra_key=[1, 2])
    return [c2, c1], [first, second], objects
