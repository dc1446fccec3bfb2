"""Write a pack file into a ``.muse`` directory, one record at a time, verifying every object."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from musehub.client.layout import LayoutError, MuseDir, check_object_id
from musehub.mpack.codec import MPackFormatError, iter_mpack


class PackError(ValueError):
    """The pack is malformed or an object's bytes do not hash to its id."""


@dataclass
class UnpackCounts:
    commits: int = 0
    snapshots: int = 0
    objects: int = 0


def unpack_into(pack: Path, repo: MuseDir) -> UnpackCounts:
    """Stream ``pack`` into ``repo``; memory holds one record at a time whatever the pack size.

    A pack's own ``branch_heads`` are skipped: refs come from ``/refs``, as the muse client
    takes them.
    """
    counts = UnpackCounts()
    try:
        with pack.open("rb") as fp:
            for item in iter_mpack(fp):
                if item.kind == "object":
                    content = item.value["content"]
                    _verify_object(str(item.value["object_id"]), content)
                    repo.write_object(str(item.value["object_id"]), content)
                    counts.objects += 1
                elif item.kind == "snapshot":
                    repo.write_snapshot(item.value)
                    counts.snapshots += 1
                elif item.kind == "commit":
                    repo.write_commit(item.value)
                    counts.commits += 1
    except (MPackFormatError, LayoutError) as exc:
        raise PackError(str(exc)) from exc
    return counts


def _verify_object(object_id: str, content: bytes) -> None:
    """The muse client's rule: an object is accepted only if sha256(content) is its id."""
    check_object_id(object_id)
    actual = hashlib.sha256(content).hexdigest()
    if actual != object_id:
        raise PackError(f"object {object_id} has content hashing to {actual}: the pack is corrupt")
