"""Where each kind of content lives in object storage. Keys are built only from validated
content ids and server-made repo ids, never from raw client input."""

from __future__ import annotations


def object_key(repo_id: str, object_id: str) -> str:
    return f"objects/{repo_id}/{object_id[:2]}/{object_id}"


def upload_key(repo_id: str, object_id: str) -> str:
    """Where a presigned PUT lands; the bytes are verified before they become an object."""
    return f"uploads/{repo_id}/{object_id}"


def mpack_key(repo_id: str, sha256: str) -> str:
    """Content-addressed: the same pack bytes always land on the same key."""
    return f"mpacks/{repo_id}/{sha256}.mpack"
