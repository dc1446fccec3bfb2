"""A generated repository: muse records in memory, blob bytes rebuilt on demand."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from musehub.synth.blobs import BlobFactory

Record = dict[str, Any]


@dataclass
class SynthRepo:
    repo_id: str
    domain: str
    default_branch: str
    commits: list[Record]  # oldest first: every parent comes before its children
    snapshots: dict[str, Record]
    branch_heads: dict[str, str]
    blobs: BlobFactory
    object_sizes: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.object_sizes = dict(zip(self.blobs.ids, self.blobs.sizes, strict=True))

    @property
    def object_ids(self) -> list[str]:
        return self.blobs.ids

    @property
    def total_blob_bytes(self) -> int:
        return self.blobs.total_bytes

    def load_object(self, object_id: str) -> bytes:
        return self.blobs.load(object_id)

    def iter_objects(self) -> Iterator[tuple[str, bytes]]:
        return self.blobs.iter_blobs()

    def history(self, branch: str) -> list[Record]:
        """Every commit reachable from ``branch``'s head, tip first (newest first)."""
        by_id = {c["commit_id"]: c for c in self.commits}
        reachable: set[str] = set()
        stack = [self.branch_heads[branch]]
        while stack:
            cid = stack.pop()
            if cid in reachable:
                continue
            reachable.add(cid)
            commit = by_id[cid]
            stack.extend(p for p in (commit["parent_commit_id"], commit["parent2_commit_id"]) if p)
        return [c for c in reversed(self.commits) if c["commit_id"] in reachable]
