"""The client against the real API app (test PostgreSQL, each storage backend) in process."""

from __future__ import annotations

import json
from pathlib import Path

from musehub.client.clone import clone
from musehub.client.wire import MuseRemote
from musehub.synth import generate_repo, push_synth
from tests.conftest import Hub
from tests.prebuild.test_prebuild_integration import wait_for_rows


async def test_push_synth_then_clone_through_the_api(hub: Hub, tmp_path: Path) -> None:
    owner, slug, token = await hub.create_repo()
    url = f"http://hub.test/{owner}/{slug}"
    transport = hub.transport  # the app, and the storage's own URLs on S3
    repo = generate_repo(80, 20, 40_000, 3, seed=21)  # some blobs over 64 KiB: presign path

    async with MuseRemote(url, token, transport=transport) as remote:
        report = await push_synth(remote, repo)
        refs = await remote.refs()
    assert report.commits == 80 and refs.branch_heads == repo.branch_heads

    # The first clone builds the pack: by URL, or inline while it is written when the build
    # runs past stream_builds_after_seconds (a loaded machine). Either way every file checks.
    result = await clone(url, tmp_path / "clone", transport=transport, progress=False)
    assert result.commits == 80 and result.objects == len(repo.object_ids)
    muse = tmp_path / "clone" / ".muse"
    for commit in repo.commits:
        assert json.loads((muse / "commits" / f"{commit['commit_id']}.json").read_text()) == commit
    head = next(c for c in repo.commits if c["commit_id"] == repo.branch_heads["main"])
    for rel, oid in repo.snapshots[head["snapshot_id"]]["manifest"].items():
        assert (tmp_path / "clone" / rel).read_bytes() == repo.load_object(oid)

    # Once its pack is recorded, a clone is one URL.
    await wait_for_rows(hub, refs.repo_id, 1)
    again = await clone(url, tmp_path / "again", transport=transport, progress=False)
    assert again.via_url and again.commits == 80
