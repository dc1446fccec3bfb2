"""push_synth through the real push path, then clone it back: every record and file survives."""

from __future__ import annotations

import json
from pathlib import Path

from musehub.client.clone import clone
from musehub.client.wire import MuseRemote
from musehub.synth import generate_repo, push_synth
from tests.client.fake_hub import BASE, FakeHub


async def test_push_synth_then_clone(tmp_path: Path) -> None:
    repo = generate_repo(120, 15, 30_000, 3, seed=11)
    hub = FakeHub(repo_id=repo.repo_id)
    progress: list[int] = []
    async with MuseRemote(BASE, "tok", transport=hub.transport()) as remote:
        report = await push_synth(remote, repo, on_push=lambda done, _: progress.append(done))
    assert hub.heads == repo.branch_heads == report.branch_heads
    assert report.commits == 120 and progress[-1] == 120 and report.pushes == len(progress)
    assert set(hub.objects) == set(repo.object_ids)

    result = await clone(BASE, tmp_path / "synth", transport=hub.transport(), progress=False)
    assert result.commits == 120 and result.objects == len(repo.object_ids)
    muse = tmp_path / "synth" / ".muse"
    for commit in repo.commits:
        stored = json.loads((muse / "commits" / f"{commit['commit_id']}.json").read_text())
        assert stored == commit
    head = repo.commits[[c["commit_id"] for c in repo.commits].index(repo.branch_heads["main"])]
    for rel, oid in repo.snapshots[head["snapshot_id"]]["manifest"].items():
        assert (tmp_path / "synth" / rel).read_bytes() == repo.load_object(oid)


async def test_push_synth_splits_runs_to_the_body_cap() -> None:
    repo = generate_repo(40, 10, 500, 1, seed=5)
    hub = FakeHub()
    async with MuseRemote(BASE, transport=hub.transport()) as remote:
        report = await push_synth(remote, repo, max_body_bytes=8_000)
    assert report.pushes > 1 and hub.heads == repo.branch_heads
    push_sizes = [s.size for s in hub.seen if s.path.endswith("/push")]
    assert len(push_sizes) == report.pushes and max(push_sizes) <= 8_000 + 200  # + envelope
