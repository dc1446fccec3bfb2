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
