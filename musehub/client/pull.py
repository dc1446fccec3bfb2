"""``musehub pull``: bring a clone up to date with its remote and fast-forward its branch.

Sequence: ``POST /fetch`` with ``want: []`` (every remote head: the want set a clone asks for,
so the hub's chain for it answers), ``have`` = the local tips (local branches and the remote's
tracking pointers that are here), ``capabilities: ["mpack-chain", "mpack-url", "mpack-zstd",
"mpack-refs"]``, answered with the refs and the packs of what ``have`` lacks (nothing when it
holds every head): one round trip. A hub without ``mpack-refs`` gets what muse does, ``GET
/refs`` → when a remote head is not here yet, ``POST /fetch`` with ``want`` = every remote head
(deduped, sorted) and the same ``have``. A hub that has the pack chain for the heads and finds a
position of it in ``have`` answers with the parts after it (a cache ``HIT``); otherwise with one
pack built for this request, or inline.

The packs are decoded while they download (``parts.stream_parts``, as a clone does) into a
staging folder inside ``.muse``; only once every part checked out are the records moved into
place, commits last (``MuseDir.adopt``). Then, as muse does:

- every remote-tracking pointer is set to the remote's head; those of deleted branches go;
- the current branch is fast-forwarded to its remote head and the working tree updated
  (``worktree.py``; local edits the update would overwrite stop it first, nothing written);
- a branch the remote force-pushed is reset to the remote head when it held nothing of its
  own (it was still at the old remote head); a branch with commits of its own that the remote
  lacks has diverged: the fetch is kept, the branch and tree are left, and the user is told to
  merge (``muse pull`` merges; this client does not).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TextIO

from musehub.client.clone import CAPABILITIES, ORIGIN, download_into
from musehub.client.errors import DownloadError, PullError, RemoteError
from musehub.client.layout import LayoutError, MuseDir, check_branch_name
from musehub.client.pipe import PipeAborted
from musehub.client.progress import ByteProgress
from musehub.client.pull_request import local_tips, open_repo
from musehub.client.unpack import PackError, UnpackCounts, unpack_stream
from musehub.client.wire import (
    URL_ANSWER_MAX_BYTES,
    InlinePack,
    MPackURL,
    MuseRemote,
    RemoteRefs,
)
from musehub.client.worktree import LocalChanges, apply_update, plan_update

if TYPE_CHECKING:
    import httpx

    from musehub.client.early import EarlyRequest

STAGING_PREFIX = "pull-"
STALE_STAGING_S = 3600.0

Outcome = Literal["up to date", "fast-forward", "reset", "ahead", "diverged", "not on remote"]


@dataclass(frozen=True)
class PullResult:
    root: Path
    branch: str
    old_head: str | None
    new_head: str | None
    outcome: Outcome
    counts: UnpackCounts
    bytes: int  # pack bytes received
    parts: int  # packs the answer came in (0: nothing fetched, or inline)
    files_written: int
    files_removed: int
    pruned: tuple[str, ...]  # remote branches gone since the last pull
    seconds: float
    skipped_paths: tuple[str, ...] = ()


async def pull(
    root: Path,
    *,
    progress: bool = True,
    transport: httpx.AsyncBaseTransport | None = None,
    stderr: TextIO | None = None,
    early: EarlyRequest | None = None,
) -> PullResult:
    """Pull ``root``'s remote into it; raises ``PullError`` with a message a person can act on.
    ``early``: its first request, already sent (``early.send_head_set_request`` with the tips that
    ``pull_request.local_tips`` reads)."""
    started = time.monotonic()
    repo = open_repo(root)
    url = repo.remote_url(ORIGIN)
    if url is None:
        raise PullError(f"{repo.muse / 'config.toml'} names no remote {ORIGIN!r} to pull from")
    with _as_pull_error(repo):
        branch = repo.current_branch()
    have = local_tips(repo)
    async with MuseRemote(url, transport=transport, early=early) as remote:
        refs, answer = await _refs_and_answer(remote, url, have)
        want = sorted(set(refs.branch_heads.values()))
        fetched = _Fetched(UnpackCounts(), 0, 0)
        if not all(repo.has_commit(c) for c in want):
            fetched = await _fetch_into(remote, repo, want, have, answer, progress, stderr)
    with _as_pull_error(repo):
        for commit_id in want:
            if not repo.has_commit(commit_id):
                raise PullError(
                    f"the hub's answer lacks commit {commit_id}; try again or report it"
                )
        seen_before = repo.remote_heads(ORIGIN)
        pruned = _track(repo, refs, seen_before)
        move = _move_branch(repo, branch, refs.branch_heads.get(branch), seen_before.get(branch))
    return PullResult(
        root=repo.root,
        branch=branch,
        old_head=move.old,
        new_head=move.new,
        outcome=move.outcome,
        counts=fetched.counts,
        bytes=fetched.bytes,
        parts=fetched.parts,
        files_written=move.written,
        files_removed=move.removed,
        pruned=pruned,
        seconds=time.monotonic() - started,
        skipped_paths=move.skipped,
    )


async def _refs_and_answer(
    remote: MuseRemote, url: str, have: list[str]
) -> tuple[RemoteRefs, MPackURL | None]:
    """The refs, and the packs of what they name beyond ``have``, in one round trip from a hub
    that takes ``mpack-refs`` (None: nothing new, or ask ``/fetch`` below); else ``GET /refs``
    alone, as muse does."""
    try:
        together = await remote.head_set_answer(CAPABILITIES, have)
        refs, answer = together if together is not None else (await remote.refs(), None)
    except RemoteError as exc:
        raise PullError(
            f"cannot read the branches of {url} ({exc}); check the URL and that the hub is up"
        ) from exc
    return _checked_refs(refs, url), answer


def _checked_refs(refs: RemoteRefs, url: str) -> RemoteRefs:
    try:
        for branch in refs.branch_heads:
            check_branch_name(branch)
    except LayoutError as exc:
        raise PullError(f"{exc}; the remote is not safe to pull from") from exc
    if not refs.branch_heads:
        raise PullError(f"{url} has no branches: there is nothing to pull")
    return refs


@dataclass(frozen=True)
class _Fetched:
    counts: UnpackCounts
    bytes: int
    parts: int


async def _fetch_into(
    remote: MuseRemote,
    repo: MuseDir,
    want: list[str],
    have: list[str],
    named: MPackURL | None,
    progress: bool,
    stderr: TextIO | None,
) -> _Fetched:
    """Fetch (unless the packs were ``named`` already) and decode into a staging folder in
    ``.muse``, then move the records into place."""
    _sweep_stale_staging(repo)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=repo.muse))
    try:
        stage = MuseDir(repo.root, staging=staging)
        for kind in ("objects", "commits", "snapshots"):
            (staging / kind).mkdir()
        answer = named or await _fetch(remote, want, have, staging, progress, stderr)
        with _as_pull_error(repo):
            if isinstance(answer, MPackURL):
                unpacked = await download_into(
                    remote,
                    want,
                    have,
                    CAPABILITIES,
                    answer,
                    stage,
                    head=None,
                    progress=progress,
                    stderr=stderr,
                )
                counts = unpacked.counts
                fetched = _Fetched(counts, answer.size, len(answer.parts))
            else:
                with answer.path.open("rb") as fp:
                    counts = unpack_stream(fp, stage).counts
                fetched = _Fetched(counts, answer.size, 0)
            repo.adopt(stage)
        return fetched
    finally:
        shutil.rmtree(staging, ignore_errors=True)


async def _fetch(
    remote: MuseRemote,
    want: list[str],
    have: list[str],
    staging: Path,
    progress: bool,
    stderr: TextIO | None,
) -> MPackURL | InlinePack:
    """``POST /fetch`` for ``want`` beyond ``have``: pack URLs, or an inline pack spooled into
    ``staging``."""
    bar = (
        ByteProgress("Receiving", stream=stderr, min_bytes=URL_ANSWER_MAX_BYTES)
        if progress
        else None
    )
    try:
        return await remote.fetch(
            want, have, CAPABILITIES, spool_dir=staging, on_bytes=bar.advance if bar else None
        )
    except RemoteError as exc:
        raise PullError(f"the hub could not send the new history ({exc}); try again") from exc
    finally:
        if bar:
            bar.finish()


def _sweep_stale_staging(repo: MuseDir) -> None:
    """Staging folders a killed pull left (old enough that no pull still writes them)."""
    cutoff = time.time() - STALE_STAGING_S
    for folder in repo.muse.glob(f"{STAGING_PREFIX}*"):
        with contextlib.suppress(OSError):
            if folder.is_dir() and folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)


def _track(repo: MuseDir, refs: RemoteRefs, seen_before: dict[str, str]) -> tuple[str, ...]:
    """Remote-tracking pointers := the remote's heads; those of deleted branches go."""
    for branch, commit_id in sorted(refs.branch_heads.items()):
        repo.set_remote_head(ORIGIN, branch, commit_id)
    pruned = tuple(sorted(set(seen_before) - set(refs.branch_heads)))
    for branch in pruned:
        repo.drop_remote_head(ORIGIN, branch)
    return pruned


@dataclass(frozen=True)
class _Move:
    outcome: Outcome
    old: str | None
    new: str | None
    written: int = 0
    removed: int = 0
    skipped: tuple[str, ...] = ()


def _move_branch(repo: MuseDir, branch: str, theirs: str | None, last_seen: str | None) -> _Move:
    ours = repo.branches().get(branch)
    if theirs is None:
        return _Move("not on remote", ours, ours)
    if ours == theirs:
        return _Move("up to date", ours, ours)
    # The usual case first: its walk stops at `ours`, after the few commits the pull brought.
    if ours is None or ours in _ancestors(repo, theirs):
        outcome: Outcome = "fast-forward"
    elif theirs in _ancestors(repo, ours):
        return _Move("ahead", ours, ours)
    elif ours == last_seen:
        outcome = "reset"  # force-pushed, and the branch had nothing of its own
    else:
        return _Move("diverged", ours, ours)
    old_tree = repo.head_manifest(ours) if ours is not None else {}
    update = plan_update(old_tree, repo.head_manifest(theirs))
    apply_update(repo, old_tree, update)
    repo.set_branch(branch, theirs)
    return _Move(
        outcome,
        ours,
        theirs,
        len(update.write) - len(update.skipped_paths),
        len(update.remove),
        tuple(update.skipped_paths),
    )


def _ancestors(repo: MuseDir, tip: str) -> Iterator[str]:
    """``tip`` and every commit it descends from that is here, nearest first."""
    seen = {tip}
    queue = deque([tip])
    while queue:
        commit_id = queue.popleft()
        yield commit_id
        commit = repo.read_commit(commit_id) or {}
        for parent in (commit.get("parent_commit_id"), commit.get("parent2_commit_id")):
            if isinstance(parent, str) and parent not in seen:
                seen.add(parent)
                queue.append(parent)


@contextlib.contextmanager
def _as_pull_error(repo: MuseDir) -> Iterator[None]:
    try:
        yield
    except (LocalChanges, DownloadError) as exc:
        raise PullError(str(exc)) from exc
    except PackError as exc:
        raise PullError(f"the pack from the hub is not valid: {exc}") from exc
    except LayoutError as exc:
        raise PullError(f"cannot update {repo.root}: {exc}") from exc
    except PipeAborted:
        raise
    except OSError as exc:
        raise PullError(f"cannot write to {repo.root}: {exc}") from exc
