"""The .muse writer lays out what the muse client lays out, from a pack the real client made."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from musehub.client.layout import LayoutError, MuseDir, check_branch_name, safe_work_path
from musehub.client.unpack import PackError, unpack_into
from musehub.mpack.records import COMMIT_KEYS
from tests.client.conftest import VECTOR

MAIN = "936c3ea1ee4476c086ec6489d1c880857e1fcb5edb2502b81283f0273115ccf6"
CHORUS = "22b1ff108a79b1ab77edf15f95418a1dfae4df6c40fd07dd0ab94383919f81e3"


@pytest.fixture
def repo(tmp_path: Path) -> MuseDir:
    repo = MuseDir(tmp_path / "song")
    repo.root.mkdir()
    repo.init(repo_id="1b55bcb5-33f8-4f81-84ce-ced225e8dc95", domain="code", default_branch="main")
    return repo


def test_unpack_then_checkout_matches_the_snapshot(repo: MuseDir, vector: dict[str, Any]) -> None:
    counts = unpack_into(VECTOR, repo)
    assert (counts.commits, counts.snapshots, counts.objects) == (5, 5, 7)
    for branch, head in {"main": MAIN, "chorus": CHORUS}.items():
        repo.set_branch(branch, head)

    report = repo.checkout(MAIN)

    merge = next(c for c in vector["commits"] if c["commit_id"] == MAIN)
    snapshot = next(s for s in vector["snapshots"] if s["snapshot_id"] == merge["snapshot_id"])
    contents = {o["object_id"]: o["content"] for o in vector["objects"]}
    assert report.files == len(snapshot["manifest"]) and not report.skipped_paths
    for rel, object_id in snapshot["manifest"].items():
        assert (repo.root / rel).read_bytes() == contents[object_id]
    work_files = {
        p.relative_to(repo.root).as_posix()
        for p in repo.root.rglob("*")
        if p.is_file() and ".muse" not in p.parts
    }
    assert work_files == set(snapshot["manifest"])


def test_layout_is_the_muse_clients(repo: MuseDir, vector: dict[str, Any]) -> None:
    unpack_into(VECTOR, repo)
    repo.set_branch("main", MAIN)
    repo.set_branch("chorus", CHORUS)
    muse = repo.muse

    assert (muse / "HEAD").read_text() == "refs/heads/main\n"
    assert (muse / "refs" / "heads" / "main").read_text() == MAIN
    assert (muse / "refs" / "heads" / "chorus").read_text() == CHORUS
    meta = json.loads((muse / "repo.json").read_text())
    assert set(meta) == {"repo_id", "schema_version", "created_at", "domain"}
    assert meta["domain"] == "code" and meta["schema_version"] == "2"
    for obj in vector["objects"]:
        oid = obj["object_id"]
        assert (muse / "objects" / oid[:2] / oid[2:]).read_bytes() == obj["content"]
    for commit in vector["commits"]:
        stored = json.loads((muse / "commits" / f"{commit['commit_id']}.json").read_text())
        assert stored == commit and tuple(stored) == COMMIT_KEYS  # every key, unchanged
    for snapshot in vector["snapshots"]:
        path = muse / "snapshots" / f"{snapshot['snapshot_id']}.json"
        assert json.loads(path.read_text()) == snapshot
    assert not list(muse.rglob(".obj-tmp-*"))


def test_a_tampered_object_is_refused(repo: MuseDir, tmp_path: Path) -> None:
    data = bytearray(VECTOR.read_bytes())
    at = data.index(b"chorus line\n")  # inside an object's content
    data[at] ^= 0x20
    bad = tmp_path / "bad.mpack"
    bad.write_bytes(bytes(data))
    with pytest.raises(PackError, match="hashing to"):
        unpack_into(bad, repo)


def test_a_truncated_pack_is_refused(repo: MuseDir, tmp_path: Path) -> None:
    bad = tmp_path / "short.mpack"
    bad.write_bytes(VECTOR.read_bytes()[:-100])
    with pytest.raises(PackError):
        unpack_into(bad, repo)


@pytest.mark.parametrize(
    "name", ["../evil", "a/../b", "/abs", ".hidden", "x.lock", "a//b", "sp ace", "", "a\\b"]
)
def test_unsafe_branch_names_are_refused(name: str) -> None:
    with pytest.raises(LayoutError):
        check_branch_name(name)


@pytest.mark.parametrize("name", ["main", "feature/mpack", "release/0.2", "fix-1"])
def test_ordinary_branch_names_pass(name: str) -> None:
    check_branch_name(name)


@pytest.mark.parametrize("rel", ["../x", "/etc/passwd", ".muse/HEAD", "a/./b", "a\\b", ""])
def test_unsafe_manifest_paths_do_not_land(tmp_path: Path, rel: str) -> None:
    assert safe_work_path(tmp_path, rel) is None


def test_unsafe_manifest_paths_are_skipped_at_checkout(repo: MuseDir) -> None:
    content = b"hello\n"
    oid = hashlib.sha256(content).hexdigest()
    repo.write_object(oid, content)
    snap = {"snapshot_id": "a" * 64, "manifest": {"ok.txt": oid, "../escape.txt": oid}}
    repo.write_snapshot(snap)
    repo.write_commit({"commit_id": "b" * 64, "snapshot_id": "a" * 64})
    report = repo.checkout("b" * 64)
    assert report.files == 1 and report.skipped_paths == ["../escape.txt"]
    assert (repo.root / "ok.txt").read_bytes() == content
    assert not (repo.root.parent / "escape.txt").exists()
