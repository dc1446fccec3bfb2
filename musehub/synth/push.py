"""Push a generated repository through the real push path, in time order and bounded chunks.

History goes up one run at a time (consecutive commits of one branch), oldest first, so every
bundle has exactly one tip and all its parents are already on the remote. A run whose records
would exceed ``max_body_bytes`` is split.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import msgpack

from musehub.client.push import push_repository
from musehub.client.wire import MuseRemote
from musehub.synth.repo import Record, SynthRepo

MAX_PUSH_BODY_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class SynthPushReport:
    pushes: int
    commits: int
    seconds: float
    branch_heads: dict[str, str]


async def push_synth(
    remote: MuseRemote,
    repo: SynthRepo,
    *,
    max_body_bytes: int = MAX_PUSH_BODY_BYTES,
    on_push: Callable[[int, int], None] | None = None,
) -> SynthPushReport:
    """Push every branch of ``repo``; ``on_push(commits_done, commits_total)`` after each push."""
    started = time.monotonic()
    pushes = done = 0
    heads: dict[str, str] = {}
    for branch, chunk in _chunks(repo, max_body_bytes):
        answer = await push_repository(
            remote,
            list(reversed(chunk)),  # the wire wants tip-first
            repo.snapshots,
            repo.load_object,
            branch,
            object_sizes=repo.object_sizes,
        )
        heads = {str(b): str(c) for b, c in (answer.get("branch_heads") or {}).items()} or heads
        pushes += 1
        done += len(chunk)
        if on_push is not None:
            on_push(done, len(repo.commits))
    return SynthPushReport(pushes, done, time.monotonic() - started, heads)


def _chunks(repo: SynthRepo, max_body_bytes: int) -> Iterator[tuple[str, list[Record]]]:
    """Runs of same-branch commits, oldest first, each cut to fit ``max_body_bytes``."""
    chunk: list[Record] = []
    branch = ""
    size = 0
    for commit in repo.commits:
        weight = _weight(commit, repo)
        if chunk and (commit["branch"] != branch or size + weight > max_body_bytes):
            yield branch, chunk
            chunk, size = [], 0
        branch = commit["branch"]
        chunk.append(commit)
        size += weight
    if chunk:
        yield branch, chunk


def _weight(commit: Record, repo: SynthRepo) -> int:
    snapshot = repo.snapshots[commit["snapshot_id"]]
    return len(msgpack.packb(commit)) + len(msgpack.packb(snapshot))
