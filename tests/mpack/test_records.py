"""Record validation: real records pass unchanged, each bad case names the record and field."""

from __future__ import annotations

from typing import Any

import pytest

from musehub.mpack.records import (
    COMMIT_KEYS,
    RecordError,
    validate_commit,
    validate_object,
    validate_snapshot,
)
from tests.mpack.helpers import load_vector, make_commit, make_object, make_snapshot

OID = "0" * 64
SNAP = make_snapshot({"a.txt": OID})


def test_commit_keys_are_the_clients_22_in_order() -> None:
    assert len(COMMIT_KEYS) == 22
    for commit in load_vector()["commits"]:
        assert tuple(commit) == COMMIT_KEYS


def test_vector_records_validate_and_come_back_unchanged() -> None:
    vector = load_vector()
    for commit in vector["commits"]:
        assert validate_commit(commit) is commit
    for snap in vector["snapshots"]:
        assert validate_snapshot(snap) is snap
    for obj in vector["objects"]:
        assert validate_object(obj) == (obj["object_id"], obj["content"])


def test_commit_keeps_unknown_keys() -> None:
    commit = make_commit(SNAP["snapshot_id"], future_field={"x": [1, b"\x00"]})
    assert validate_commit(dict(commit)) == commit


def test_merge_commit_and_missing_parent_keys_are_accepted() -> None:
    p1, p2 = "1" * 64, "2" * 64
    validate_commit(make_commit(SNAP["snapshot_id"], parents=(p1, p2)))
    root = make_commit(SNAP["snapshot_id"])
    del root["parent_commit_id"], root["parent2_commit_id"]
    validate_commit(root)


def _commit(**changes: Any) -> dict[str, Any]:
    commit = make_commit(SNAP["snapshot_id"])
    for key, value in changes.items():
        if value is _DELETE:
            del commit[key]
        else:
            commit[key] = value
    return commit


_DELETE = object()


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (["not", "a", "map"], "commit record must be a map, got an array"),
        ({1: "x", "commit_id": "a" * 64}, "commit aaaaaaaaaaaa…: every key must be a string"),
        (_commit(commit_id="AB\nC"), "commit record: field 'commit_id' must be a 64-char"),
        (_commit(commit_id=None), "commit record: field 'commit_id' must be a 64-character"),
        (_commit(commit_id=_DELETE), "commit record: field 'commit_id' is missing"),
        (_commit(snapshot_id="sha256:" + OID), "field 'snapshot_id' must be a 64-character"),
        (_commit(parent_commit_id="x"), "field 'parent_commit_id' must be nil or a 64-char"),
        (_commit(parent2_commit_id=1), "field 'parent2_commit_id' must be nil or a 64-char"),
        (_commit(message=3), "field 'message' must be a string, got an integer"),
        (_commit(message=_DELETE), "field 'message' is missing"),
        (_commit(committed_at=None), "field 'committed_at' must be a string, got nil"),
        (_commit(branch=b"main"), "field 'branch' must be a string, got bin (bytes)"),
        (_commit(metadata=[]), "field 'metadata' must be a map of string to string, got an array"),
        (_commit(metadata={"k": 1}), "field 'metadata' must be a map of string to string, got"),
        (_commit(message="edited"), "commit_id does not match the commit's contents"),
        (_commit(parent_commit_id="1" * 64), "commit_id does not match the commit's contents"),
        (_commit(message="\ud800"), "a string field is not valid UTF-8"),
    ],
)
def test_bad_commits_name_record_and_field(record: object, message: str) -> None:
    with pytest.raises(RecordError) as info:
        validate_commit(record)
    text = str(info.value)
    assert message in text
    assert "\n" not in text


def test_bad_commit_message_names_the_commit() -> None:
    commit = _commit(message=3)
    with pytest.raises(RecordError) as info:
        validate_commit(commit)
    assert str(info.value).startswith(f"commit {commit['commit_id'][:12]}…: ")


def test_mismatched_commit_id_gives_the_recomputed_id() -> None:
    commit = _commit(committed_at="2000-01-01T00:00:00+00:00")
    with pytest.raises(RecordError, match=r"hash to [0-9a-f]{64}"):
        validate_commit(commit)


def _snapshot(manifest: object) -> dict[str, Any]:
    return {"snapshot_id": "f" * 64, "manifest": manifest}


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ("snap", "snapshot record must be a map, got a string"),
        ({"manifest": {}}, "snapshot record: field 'snapshot_id' is missing"),
        ({"snapshot_id": "f" * 64}, "snapshot ffffffffffff…: field 'manifest' is missing"),
        (_snapshot([]), "field 'manifest' must be a map of path to object id, got an array"),
        (_snapshot({"": OID}), "manifest path '' must not be empty"),
        (_snapshot({"/etc/passwd": OID}), "manifest path '/etc/passwd' must be relative"),
        (_snapshot({"a/../../b": OID}), "must not contain a '..' segment"),
        (_snapshot({"..": OID}), "must not contain a '..' segment"),
        (_snapshot({"a\x00b": OID}), "must not contain NUL"),
        (_snapshot({b"a": OID}), "manifest path b'a' must be a string"),
        (_snapshot({"a": "xyz"}), "manifest entry 'a' must map to a 64-character"),
        (_snapshot({"a": OID}), "snapshot_id does not match its manifest"),
    ],
)
def test_bad_snapshots_name_record_and_field(record: object, message: str) -> None:
    with pytest.raises(RecordError) as info:
        validate_snapshot(record)
    assert message in str(info.value)


def test_snapshot_paths_that_look_odd_but_are_safe_pass() -> None:
    for path in ("..hidden", "a..b/c", "dir/.museignore", "é/ü.txt"):
        validate_snapshot(make_snapshot({path: OID}))


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (b"raw", "object record must be a map, got bin (bytes)"),
        ({"content": b"x"}, "object record: field 'object_id' is missing"),
        ({"object_id": OID}, "object 000000000000…: field 'content' is missing"),
        ({"object_id": OID, "content": "text"}, "field 'content' must be msgpack bin (bytes)"),
        ({"object_id": OID, "content": b"x"}, "content hashes to 2d711642b726b044"),
    ],
)
def test_bad_objects_name_record_and_field(record: object, message: str) -> None:
    with pytest.raises(RecordError) as info:
        validate_object(record)
    assert message in str(info.value)


def test_object_extra_keys_are_ignored() -> None:
    obj = make_object(b"x") | {"path": "a.txt"}
    assert validate_object(obj) == (obj["object_id"], b"x")


def test_record_error_is_a_value_error() -> None:
    assert issubclass(RecordError, ValueError)
