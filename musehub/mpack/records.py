"""Checks on the records a client sends (commits, snapshots, objects) before the hub stores them.

Each check raises `RecordError` with one line that names the record and the field, so the
message can go straight back to the person pushing. Records are returned as given (every key,
including ones this hub does not know), because a clone must give them back unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from musehub.mpack.ids import commit_id, is_content_id, object_id, snapshot_id
from musehub.names import manifest_path_problem

# The CommitDict keys muse 0.1.5 writes, in its order.
COMMIT_KEYS: tuple[str, ...] = (
    "commit_id",
    "repo_id",
    "branch",
    "snapshot_id",
    "message",
    "committed_at",
    "parent_commit_id",
    "parent2_commit_id",
    "author",
    "metadata",
    "structured_delta",
    "sem_ver_bump",
    "breaking_changes",
    "agent_id",
    "model_id",
    "toolchain_id",
    "prompt_hash",
    "signature",
    "signer_key_id",
    "format_version",
    "reviewed_by",
    "test_runs",
)

_ID_HINT = "a 64-character lowercase hex sha256"


class RecordError(ValueError):
    """A record a client sent is malformed; the message says which record and which field."""


def validate_commit(d: object) -> dict[str, Any]:
    """Check a CommitDict and that its commit_id recomputes; return it unchanged."""
    record = _string_keyed_map(d, "commit")
    label = _label("commit", record.get("commit_id"))
    _require_id(record, "commit_id", label)
    _require_id(record, "snapshot_id", label)
    parents = [p for p in (_optional_id(record, f, label) for f in _PARENT_FIELDS) if p]
    for field in ("message", "committed_at", "branch"):
        _require_str(record, field, label)
    if "metadata" in record:
        _require_str_map(record["metadata"], f"{label}: field 'metadata'")
    expected = _recompute(
        label,
        lambda: commit_id(
            parents, record["snapshot_id"], record["message"], record["committed_at"]
        ),
    )
    if expected != record["commit_id"]:
        raise RecordError(
            f"{label}: commit_id does not match the commit's contents (parents, snapshot_id, "
            f"message and committed_at hash to {expected}); the commit was altered after it "
            "was made, or made by a client that hashes differently"
        )
    return record


def validate_snapshot(d: object) -> dict[str, Any]:
    """Check a SnapshotDict (manifest paths and ids) and that its snapshot_id recomputes."""
    record = _string_keyed_map(d, "snapshot")
    label = _label("snapshot", record.get("snapshot_id"))
    _require_id(record, "snapshot_id", label)
    if "manifest" not in record:
        raise RecordError(f"{label}: field 'manifest' is missing")
    manifest = record["manifest"]
    if not isinstance(manifest, dict):
        raise RecordError(
            f"{label}: field 'manifest' must be a map of path to object id, got {_kind(manifest)}"
        )
    for path, oid in manifest.items():
        _check_path(path, label)
        if not is_content_id(oid):
            raise RecordError(
                f"{label}: manifest entry {_show(path)} must map to {_ID_HINT}, got {_show(oid)}"
            )
    expected = _recompute(label, lambda: snapshot_id(manifest))
    if expected != record["snapshot_id"]:
        raise RecordError(
            f"{label}: snapshot_id does not match its manifest (the manifest hashes to "
            f"{expected}); the snapshot was altered after it was made"
        )
    return record


def validate_object(d: object) -> tuple[str, bytes]:
    """Check an `{object_id, content}` map (other keys are ignored); return (object_id, content)."""
    if not isinstance(d, dict):
        raise RecordError(f"object record must be a map, got {_kind(d)}")
    label = _label("object", d.get("object_id"))
    _require_id(d, "object_id", label)
    if "content" not in d:
        raise RecordError(f"{label}: field 'content' is missing")
    content = d["content"]
    if not isinstance(content, bytes):
        raise RecordError(
            f"{label}: field 'content' must be msgpack bin (bytes), got {_kind(content)}; "
            "pack with use_bin_type=True"
        )
    actual = object_id(content)
    if actual != d["object_id"]:
        raise RecordError(
            f"{label}: content hashes to {actual}, not to its object_id; "
            "the content was corrupted or the id is wrong"
        )
    return d["object_id"], content


_PARENT_FIELDS = ("parent_commit_id", "parent2_commit_id")


def _string_keyed_map(d: object, kind: str) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise RecordError(f"{kind} record must be a map, got {_kind(d)}")
    for key in d:
        if not isinstance(key, str):
            label = _label(kind, d.get(f"{kind}_id"))
            raise RecordError(f"{label}: every key must be a string, got key {_show(key)}")
    return d


def _require_id(record: Mapping[str, Any], field: str, label: str) -> None:
    if field not in record:
        raise RecordError(f"{label}: field '{field}' is missing")
    if not is_content_id(record[field]):
        raise RecordError(
            f"{label}: field '{field}' must be {_ID_HINT}, got {_show(record[field])}"
        )


def _optional_id(record: Mapping[str, Any], field: str, label: str) -> str | None:
    value = record.get(field)
    if value is not None and not is_content_id(value):
        raise RecordError(f"{label}: field '{field}' must be nil or {_ID_HINT}, got {_show(value)}")
    return value


def _require_str(record: Mapping[str, Any], field: str, label: str) -> None:
    if field not in record:
        raise RecordError(f"{label}: field '{field}' is missing")
    if not isinstance(record[field], str):
        raise RecordError(f"{label}: field '{field}' must be a string, got {_kind(record[field])}")


def _require_str_map(value: object, where: str) -> None:
    if not isinstance(value, dict):
        raise RecordError(f"{where} must be a map of string to string, got {_kind(value)}")
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise RecordError(
                f"{where} must be a map of string to string, got {_show(key)} -> {_kind(item)}"
            )


def _check_path(path: object, label: str) -> None:
    if not isinstance(path, str):
        raise RecordError(f"{label}: manifest path {_show(path)} must be a string")
    problem = manifest_path_problem(path)
    if problem:
        raise RecordError(f"{label}: manifest path {_show(path)} {problem}")


def _recompute(label: str, compute: Callable[[], str]) -> str:
    # Lone surrogates can reach here from Python callers (never from msgpack) and cannot hash.
    try:
        return compute()
    except UnicodeEncodeError:
        raise RecordError(f"{label}: a string field is not valid UTF-8") from None


def _label(kind: str, record_id: object) -> str:
    # A short id names the record; a malformed id is shown by the field message instead.
    return f"{kind} {record_id[:12]}…" if is_content_id(record_id) else f"{kind} record"


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 70 else text[:67] + "..."


def _kind(value: object) -> str:
    names = {
        type(None): "nil",
        bool: "a boolean",
        int: "an integer",
        float: "a float",
        str: "a string",
        bytes: "bin (bytes)",
        list: "an array",
        tuple: "an array",
        dict: "a map",
    }
    return names.get(type(value), type(value).__name__)
