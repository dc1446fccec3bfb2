"""Scenario 3's pulls: `musehub pull` against `git pull` of the same one-commit change, through
the modelled link.

Each round pushes one commit (one file of the tree replaced by a fresh 16 KiB blob,
`synthetic.next_commit`) to the hub and the same change to the git mirror (`baselines.
git_commit_files`), waits until the hub's prebuild has the new head set's pack, then pulls
each clone once, taking turns at going first. Each pull is the real command-line tool in a
process of its own, through a proxy of its own, so the bytes each sent are counted apart."""

from __future__ import annotations

import asyncio
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.baselines import GitDaemon, git_commit_files
from bench.hub import Hub, PushedRepo
from bench.proxy import running_proxy
from bench.synthetic import next_commit
from bench.timing import COMMAND_TIMEOUT_S, timed, tree_digest

BLOB_SIZE = 16 * 1024


@dataclass
class PullRuns:
    hub_s: list[float] = field(default_factory=list)
    git_s: list[float] = field(default_factory=list)
    hub_wire: list[int] = field(default_factory=list)
    git_wire: list[int] = field(default_factory=list)
    same_trees: bool = False


async def pull_rounds(
    hub: Hub,
    repo: PushedRepo,
    bare: Path,
    daemon: GitDaemon,
    musehub: list[str],
    folder: Path,
    rounds: int,
    *,
    mbit: float,
    latency_ms: float,
) -> PullRuns:
    """`rounds` one-commit pushes to `repo` and to the bare git repository `bare` (served by
    `daemon`, the same history), each pulled by both tools through a link of `mbit` and
    `latency_ms`."""
    runs = PullRuns()
    hub_clone, git_clone = folder / f"pull-hub-{repo.slug}", folder / f"pull-git-{repo.slug}"
    await _run([*musehub, "clone", "-q", repo.url, str(hub_clone)])
    await _run(["git", "clone", "-q", daemon.url(bare.name), str(git_clone)])
    branch = repo.synth.default_branch
    records = {str(c["commit_id"]): c for c in repo.synth.commits}
    tip: dict[str, Any] = records[repo.heads[branch]]
    manifest = dict(repo.synth.snapshots[tip["snapshot_id"]]["manifest"])
    api = urlsplit(repo.url)
    with (
        running_proxy(
            api.hostname or "127.0.0.1", api.port or 80, mbit=mbit, latency_ms=latency_ms
        ) as hub_proxy,
        running_proxy("127.0.0.1", daemon.port, mbit=mbit, latency_ms=latency_ms) as git_proxy,
    ):
        via = f"http://127.0.0.1:{hub_proxy.port}"
        env = {**os.environ, "HTTP_PROXY": via, "http_proxy": via, "NO_PROXY": "", "no_proxy": ""}
        git_url = f"git://127.0.0.1:{git_proxy.port}/{bare.name}"
        await _run(["git", "-C", str(git_clone), "remote", "set-url", "origin", git_url])
        for n in range(rounds):
            commit, snapshot, blobs = next_commit(tip, manifest, n, blob_size=BLOB_SIZE)
            changed = {
                path: blobs[oid]
                for path, oid in snapshot["manifest"].items()
                if manifest.get(path) != oid
            }
            await hub.push_commit(repo, branch, commit, snapshot, blobs)
            git_commit_files(bare, branch, changed, str(commit["message"]))
            tip, manifest = commit, snapshot["manifest"]
            if await hub.wait_warm(repo, [repo.want], timeout=120) is None:
                raise RuntimeError("the prebuild of a one-commit push took over 120 s")
            pulls = [
                (runs.hub_s, runs.hub_wire, hub_proxy, [*musehub, "pull", "-q", str(hub_clone)]),
                (
                    runs.git_s,
                    runs.git_wire,
                    git_proxy,
                    ["git", "-C", str(git_clone), "pull", "-q", "--ff-only"],
                ),
            ]
            for seconds, wire, proxy, command in pulls if n % 2 == 0 else reversed(pulls):
                before = proxy.stats.down
                seconds.append(timed(command, env))
                wire.append(proxy.stats.down - before)
    runs.same_trees = tree_digest(hub_clone) == tree_digest(git_clone)
    return runs


async def _run(command: list[str]) -> None:
    """A setup step (the clones, the git remote): run to its end, not timed."""
    await asyncio.to_thread(
        subprocess.run, command, check=True, stdout=subprocess.DEVNULL, timeout=COMMAND_TIMEOUT_S
    )
