"""The synthetic repository generator: deterministic, valid muse records, the preset's shape."""

from __future__ import annotations

import time
from typing import Any

import pytest

from musehub.mpack.ids import commit_id, object_id, snapshot_id
from musehub.mpack.records import COMMIT_KEYS, validate_commit
from musehub.synth import GABRIEL_MUSE, SynthRepo, generate_repo


def small(seed: int, blobs: int | None = None) -> SynthRepo:
    return generate_repo(60, 12, 2000, 3, seed, blobs=blobs)


@pytest.fixture(scope="module")
def preset() -> tuple[SynthRepo, float]:
    started = time.monotonic()
    repo = GABRIEL_MUSE.generate()
    return repo, time.monotonic() - started


def _fingerprint(repo: SynthRepo) -> tuple[Any, ...]:
    blobs = tuple(repo.load_object(i) for i in repo.object_ids)
    return (repo.repo_id, tuple(c["commit_id"] for c in repo.commits), repo.branch_heads, blobs)


def test_same_seed_same_repo() -> None:
    assert _fingerprint(small(7)) == _fingerprint(small(7))


def test_other_seed_other_repo() -> None:
    a, b = small(1), small(2)
    assert not set(a.object_ids) & set(b.object_ids)
    assert a.branch_heads != b.branch_heads


def test_records_are_valid_muse_records() -> None:
    repo = small(3)
    seen: set[str] = set()
    for commit in repo.commits:
        assert tuple(commit) == COMMIT_KEYS and commit["format_version"] == 5
        validate_commit(commit)  # the hub's own check, including the id
        parents = [p for p in (commit["parent_commit_id"], commit["parent2_commit_id"]) if p]
        assert set(parents) <= seen  # parents come first
        expected = commit_id(
            parents, commit["snapshot_id"], commit["message"], commit["committed_at"]
        )
        assert commit["commit_id"] == expected
        seen.add(commit["commit_id"])
    for sid, snapshot in repo.snapshots.items():
        assert snapshot_id(snapshot["manifest"]) == sid == snapshot["snapshot_id"]
    for oid, content in repo.iter_objects():
        assert object_id(content) == oid and len(content) == repo.object_sizes[oid]


def test_blob_count_and_branches_are_as_asked() -> None:
    repo = small(4, blobs=40)
    used = {o for s in repo.snapshots.values() for o in s["manifest"].values()}
    assert used == set(repo.object_ids) and len(used) == 40
    assert len(repo.branch_heads) == 3 and len(repo.commits) == 60
    assert {c["branch"] for c in repo.commits} == set(repo.branch_heads)


def test_tiny_repos_work() -> None:
    one = generate_repo(1, 3, 100, 1)
    assert len(one.commits) == 1 and len(one.object_ids) == 3
    two = generate_repo(2, 1, 100, 2, blobs=5)
    assert len(two.branch_heads) == 2 and len(two.object_ids) == 5


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        generate_repo(3, 5, 100, 4)  # more branches than commits
    with pytest.raises(ValueError):
        generate_repo(10, 5, 100, 1, blobs=4)  # fewer blobs than files


def test_preset_shape(preset: tuple[SynthRepo, float]) -> None:
    repo, seconds = preset
    assert seconds < 10
    assert len(repo.commits) == 1329
    used = {o for s in repo.snapshots.values() for o in s["manifest"].values()}
    assert len(used) == len(repo.object_ids) == 1075
    assert abs(repo.total_blob_bytes - 22_000_000) <= 2_200_000
    assert 2 <= len(repo.branch_heads) <= 6
    assert any(c["parent2_commit_id"] for c in repo.commits)  # it has merges
    sizes = sorted(repo.object_sizes.values())
    assert sizes[0] < 2_000 and sizes[-1] > 64 * 1024  # varied, some take the presign path
