"""Content ids exactly as the muse client computes them (lowercase hex sha256, NUL-separated)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from typing import TypeGuard

NUL = "\x00"
_CONTENT_ID = re.compile(r"[0-9a-f]{64}")


def object_id(content: bytes) -> str:
    """Id of a file: sha256 of its bytes."""
    return hashlib.sha256(content).hexdigest()


def snapshot_id(manifest: Mapping[str, str]) -> str:
    """Id of a snapshot: sha256 of the sorted `path NUL object_id` entries joined by NUL."""
    entries = sorted(path + NUL + oid for path, oid in manifest.items())
    return hashlib.sha256(NUL.join(entries).encode("utf-8")).hexdigest()


def commit_id(parent_ids: Iterable[str], snapshot_id: str, message: str, committed_at: str) -> str:
    """Id of a commit; `parent_ids` are the non-null parents and `committed_at` the exact
    ISO string stored in the record."""
    parents = NUL.join(sorted(parent_ids))
    text = NUL.join([parents, snapshot_id, message, committed_at])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def is_content_id(value: object) -> TypeGuard[str]:
    """True for a 64-character lowercase hex string (no `sha256:` prefix, no newline)."""
    return isinstance(value, str) and _CONTENT_ID.fullmatch(value) is not None
