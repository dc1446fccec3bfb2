"""Small commit graphs for chain tests: commits made from file maps, pushed as muse pushes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.conftest import Hub
from tests.mpack.helpers import make_commit, make_object, make_snapshot
from tests.wire.helpers import decode, push_records


@dataclass
class History:
    commits: dict[str, dict[str, Any]] = field(default_factory=dict)
    snapshots: dict[str, dict[str, Any]] = field(default_factory=dict)
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)

    def commit(self, parents: list[str], files: dict[str, bytes], message: str = "") -> str:
        manifest = {}
        for path, content in files.items():
            obj = make_object(content)
            self.objects[obj["object_id"]] = obj
            manifest[path] = obj["object_id"]
        snapshot = make_snapshot(manifest)
        self.snapshots[snapshot["snapshot_id"]] = snapshot
        pair = [*parents, None, None][:2]
        record = make_commit(
            snapshot["snapshot_id"], message or f"commit {len(self.commits)}", (pair[0], pair[1])
        )
        self.commits[record["commit_id"]] = record
        return str(record["commit_id"])

    async def push(
        self,
        hub: Hub,
        owner: str,
        slug: str,
        token: str,
        branch: str,
        tip: str,
        force: bool = False,
    ) -> dict[str, Any]:
        return decode(
            await push_records(
                hub.client,
                owner,
                slug,
                token,
                branch=branch,
                tip=tip,
                commits=list(self.commits.values()),
                snapshots=list(self.snapshots.values()),
                objects=list(self.objects.values()),
                force=force,
            )
        )
