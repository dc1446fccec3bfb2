"""The id functions agree with the muse client (the vector) and with the protocol's formulas."""

from __future__ import annotations

import hashlib

import pytest

from musehub.mpack.ids import commit_id, is_content_id, object_id, snapshot_id
from tests.mpack.helpers import load_vector


def test_every_object_id_in_the_vector_recomputes() -> None:
    objects = load_vector()["objects"]
    assert len(objects) == 7
    for obj in objects:
        assert object_id(obj["content"]) == obj["object_id"]


def test_every_snapshot_id_in_the_vector_recomputes() -> None:
    snapshots = load_vector()["snapshots"]
    assert len(snapshots) == 5
    for snap in snapshots:
        assert snapshot_id(snap["manifest"]) == snap["snapshot_id"]


def test_every_commit_id_in_the_vector_recomputes() -> None:
    commits = load_vector()["commits"]
    assert len(commits) == 5
    assert sum(c["parent2_commit_id"] is not None for c in commits) == 1  # the merge
    for c in commits:
        parents = [p for p in (c["parent_commit_id"], c["parent2_commit_id"]) if p is not None]
        assert (
            commit_id(parents, c["snapshot_id"], c["message"], c["committed_at"]) == c["commit_id"]
        )


def test_formulas_use_nul_separators_and_sorting() -> None:
    a, b = "a" * 64, "b" * 64
    assert snapshot_id({"z": a, "y": b}) == hashlib.sha256(f"y\0{b}\0z\0{a}".encode()).hexdigest()
    assert snapshot_id({}) == hashlib.sha256(b"").hexdigest()
    expected = hashlib.sha256(f"{a}\0{b}\0snap\0msg\0when".encode()).hexdigest()
    assert commit_id([b, a], "snap", "msg", "when") == expected
    assert commit_id([], "snap", "", "when") == hashlib.sha256(b"\0snap\0\0when").hexdigest()


def test_non_ascii_is_hashed_as_utf8() -> None:
    assert object_id("é".encode()) == hashlib.sha256(b"\xc3\xa9").hexdigest()
    assert snapshot_id({"é": "a" * 64}) == hashlib.sha256(b"\xc3\xa9\0" + b"a" * 64).hexdigest()


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("0" * 64, True),
        ("0123456789abcdef" * 4, True),
        ("A" * 64, False),
        ("0" * 63, False),
        ("0" * 65, False),
        ("0" * 64 + "\n", False),
        ("sha256:" + "0" * 64, False),
        ("g" * 64, False),
        (b"0" * 64, False),
        (None, False),
        (12, False),
    ],
)
def test_is_content_id(value: object, ok: bool) -> None:
    assert is_content_id(value) is ok
