"""pull against the in-memory hub: what it asks for, fast-forward, force push, deleted branches,
local edits, and the `musehub pull` command."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from musehub.cli.pull import pull_command
from musehub.client.clone import clone
from musehub.client.errors import PullError
from musehub.client.pull import PullResult, pull
from tests.chains.history import History
from tests.client.fake_hub import BASE, FakeHub

FIRST = {"a.txt": b"alpha\n", "song/verse.mid": b"\x00verse" * 100, "song/old.mid": b"old"}


def work_tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".muse" not in p.relative_to(root).parts
    }


def files_of(history: History, commit_id: str) -> dict[str, bytes]:
    manifest = history.snapshots[history.commits[commit_id]["snapshot_id"]]["manifest"]
    return {path: history.objects[oid]["content"] for path, oid in manifest.items()}


class Remote:
    """A history on the in-memory hub, and a clone of it."""

    def __init__(self, tmp_path: Path) -> None:
        self.history = History()
        self.hub = FakeHub()
        self.root = tmp_path / "song"

    def publish(self, branch: str, tip: str) -> None:
        self.hub.commits.update(self.history.commits)
        self.hub.snapshots.update(self.history.snapshots)
        self.hub.objects.update({i: o["content"] for i, o in self.history.objects.items()})
        self.hub.heads[branch] = tip

    async def pull(self) -> PullResult:
        return await pull(self.root, transport=self.hub.transport(), progress=False)

    def ref(self, *path: str) -> str:
        return self.root.joinpath(".muse", *path).read_text()


# What the fixture's clone asked the hub's API: the refs and the packs in one request.
CLONE_REQUESTS = 1


def hub_requests(remote: Remote, since: int = CLONE_REQUESTS) -> list[tuple[str, str, object]]:
    """The requests to the hub's API (pack downloads left out) after the first ``since``."""
    api = [s for s in remote.hub.seen if not s.path.startswith("/_pack/")]
    return [(s.method, s.path.rsplit("/", 1)[-1], s.body) for s in api[since:]]


@pytest.fixture
async def remote(tmp_path: Path) -> Remote:
    remote = Remote(tmp_path)
    c1 = remote.history.commit([], FIRST)
    remote.publish("main", c1)
    await clone(BASE, remote.root, transport=remote.hub.transport(), progress=False)
    return remote


async def test_pull_after_pushes_fast_forwards_the_tree(remote: Remote) -> None:
    h = remote.history
    c1 = remote.hub.heads["main"]
    second = {**FIRST, "a.txt": b"alpha, changed\n", "new/deep/file.txt": b"new"}
    del second["song/old.mid"]
    c2 = h.commit([c1], second)
    c3 = h.commit([c2], {**second, "b.txt": b"b"})
    remote.publish("main", c3)
    result = await pull(remote.root, transport=remote.hub.transport(), progress=False)
    assert result.outcome == "fast-forward" and (result.old_head, result.new_head) == (c1, c3)
    assert result.counts.commits == 2
    assert work_tree(remote.root) == files_of(h, c3)
    assert not (remote.root / "song" / "old.mid").exists()
    assert remote.ref("refs", "heads", "main") == c3 == remote.ref("remotes", "origin", "main")
    # One request for the refs and the packs (`mpack-refs`), then the pack itself.
    asked = hub_requests(remote)
    caps = ["mpack-chain", "mpack-url", "mpack-zstd", "mpack-refs"]
    assert asked == [("POST", "fetch", {"want": [], "have": [c1], "capabilities": caps})]

    seen = len(remote.hub.seen)
    again = await pull(remote.root, transport=remote.hub.transport(), progress=False)
    assert again.outcome == "up to date" and again.counts.commits == 0
    # The answer holds the refs alone: nothing to download.
    assert [(s.method, s.path) for s in remote.hub.seen[seen:]] == [("POST", "/alice/song/fetch")]


async def test_pull_from_a_hub_without_refs_in_fetch_asks_as_muse_does(remote: Remote) -> None:
    h = remote.history
    c1 = remote.hub.heads["main"]
    c2 = h.commit([c1], {**FIRST, "b.txt": b"b"})
    remote.publish("main", c2)
    remote.hub.refs_in_fetch = False  # a hub from before `mpack-refs`: 400 to an empty want
    result = await remote.pull()
    assert result.outcome == "fast-forward" and result.counts.commits == 1
    assert work_tree(remote.root) == files_of(h, c2)
    caps = ["mpack-chain", "mpack-url", "mpack-zstd"]
    assert hub_requests(remote)[1:] == [  # the first: the empty want, refused
        ("GET", "refs", b""),
        ("POST", "fetch", {"want": [c2], "have": [c1], "capabilities": caps}),
    ]


async def test_pull_after_a_force_push_resets_a_branch_with_nothing_of_its_own(
    remote: Remote,
) -> None:
    h = remote.history
    c1 = remote.hub.heads["main"]
    c2 = h.commit([c1], {**FIRST, "a.txt": b"two\n"})
    remote.publish("main", c2)
    await remote.pull()
    rewritten = h.commit([c1], {**FIRST, "a.txt": b"rewritten\n"}, message="rewritten")
    remote.publish("main", rewritten)  # a force push: c2 is gone from the branch
    result = await pull(remote.root, transport=remote.hub.transport(), progress=False)
    assert result.outcome == "reset" and result.new_head == rewritten
    assert work_tree(remote.root) == files_of(h, rewritten)
    assert remote.ref("refs", "heads", "main") == rewritten


async def test_a_deleted_branch_loses_its_tracking_pointer(remote: Remote) -> None:
    h = remote.history
    dev = h.commit([remote.hub.heads["main"]], {**FIRST, "dev.txt": b"dev"})
    remote.publish("dev", dev)
    await remote.pull()
    assert remote.ref("remotes", "origin", "dev") == dev
    del remote.hub.heads["dev"]
    result = await pull(remote.root, transport=remote.hub.transport(), progress=False)
    assert result.pruned == ("dev",) and result.outcome == "up to date"
    assert not (remote.root / ".muse" / "remotes" / "origin" / "dev").exists()


async def test_local_edits_stop_the_update_before_anything_changes(remote: Remote) -> None:
    h = remote.history
    c1 = remote.hub.heads["main"]
    c2 = h.commit([c1], {**FIRST, "a.txt": b"theirs\n"})
    remote.publish("main", c2)
    (remote.root / "a.txt").write_bytes(b"mine, not committed\n")
    with pytest.raises(PullError, match=r"a\.txt"):
        await remote.pull()
    assert (remote.root / "a.txt").read_bytes() == b"mine, not committed\n"
    assert remote.ref("refs", "heads", "main") == c1
    # The fetch itself is kept: the commit is here, and the next pull needs no download.
    assert (remote.root / ".muse" / "commits" / f"{c2}.json").is_file()


async def test_a_bad_pack_leaves_refs_tree_and_records_as_they_were(remote: Remote) -> None:
    h = remote.history
    c1 = remote.hub.heads["main"]
    c2 = h.commit([c1], {**FIRST, "a.txt": b"two\n"})
    remote.publish("main", c2)
    remote.hub.corrupt_pack = True
    before = work_tree(remote.root)
    with pytest.raises(PullError, match=r"sha256|corrupt"):
        await remote.pull()
    assert work_tree(remote.root) == before
    assert remote.ref("refs", "heads", "main") == c1 == remote.ref("remotes", "origin", "main")
    assert not (remote.root / ".muse" / "commits" / f"{c2}.json").exists()
    assert [p.name for p in (remote.root / ".muse").iterdir() if p.name.startswith("pull-")] == []


def test_pull_command(
    remote: Remote, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    h = remote.history
    c2 = h.commit([remote.hub.heads["main"]], {**FIRST, "c.txt": b"c"})
    remote.publish("main", c2)
    monkeypatch.chdir(remote.root / "song")  # inside the clone, below its root
    assert pull_command(None, transport=remote.hub.transport()) == 0
    assert f"fast-forwarded main to {c2[:12]}" in capsys.readouterr().out
    assert pull_command(remote.root.parent, transport=remote.hub.transport()) == 1
    assert "not in a muse repository" in capsys.readouterr().err


async def test_a_branch_with_commits_of_its_own_is_ahead_then_diverged(remote: Remote) -> None:
    from musehub.client.layout import MuseDir

    h = remote.history
    c1 = remote.hub.heads["main"]
    mine = h.commit([c1], {**FIRST, "mine.txt": b"local work"})
    local = MuseDir(remote.root)
    local.write_commit(h.commits[mine])  # as `muse commit` would leave it
    local.write_snapshot(h.snapshots[h.commits[mine]["snapshot_id"]])
    local.set_branch("main", mine)
    ahead = await remote.pull()
    assert ahead.outcome == "ahead" and remote.ref("refs", "heads", "main") == mine

    theirs = h.commit([c1], {**FIRST, "theirs.txt": b"remote work"})
    remote.publish("main", theirs)
    before = work_tree(remote.root)
    diverged = await remote.pull()
    assert diverged.outcome == "diverged" and diverged.new_head == mine
    assert remote.ref("refs", "heads", "main") == mine and work_tree(remote.root) == before
    assert remote.ref("remotes", "origin", "main") == theirs  # the fetch is kept
    exit_code = await asyncio.to_thread(
        pull_command, remote.root, True, transport=remote.hub.transport()
    )
    assert exit_code == 1


async def test_pull_from_a_hub_that_answers_inline(remote: Remote) -> None:
    h = remote.history
    c2 = h.commit([remote.hub.heads["main"]], {**FIRST, "inline.txt": b"sent inline"})
    remote.publish("main", c2)
    remote.hub.mpack_url = False  # a hub without URL answers: the pack comes in the body
    result = await remote.pull()
    assert result.outcome == "fast-forward" and result.parts == 0 and result.counts.commits == 1
    assert work_tree(remote.root) == files_of(h, c2)
    assert [p.name for p in (remote.root / ".muse").iterdir() if p.name.startswith("pull-")] == []


async def test_a_killed_pull_s_staging_is_swept_by_the_next(remote: Remote) -> None:
    import os
    import time

    left = remote.root / ".muse" / "pull-killed"
    (left / "commits").mkdir(parents=True)
    old = time.time() - 2 * 3600
    os.utime(left, (old, old))
    recent = remote.root / ".muse" / "pull-running"
    recent.mkdir()  # another pull may still be writing this one
    remote.publish("main", remote.history.commit([remote.hub.heads["main"]], FIRST, "again"))
    await remote.pull()
    assert not left.exists() and recent.exists()
