"""``muse clone``: copy a remote repository into a fresh directory and check out its default branch.

Sequence (docs/wire-protocol.md): ``GET /refs`` → ``POST /fetch`` with ``want`` = every branch head
(deduped, sorted), ``have = []``, ``capabilities: ["mpack-url"]`` → download the pack from the
URL (size and sha256 checked) or take the inline answer → stream the pack into ``.muse``
(every object's sha256 checked) → refs from the ``/refs`` answer → check out the working tree.
A failed clone leaves ``dest`` as it found it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import httpx

from musehub.client.download import download_verified
from musehub.client.errors import CloneError, RemoteError
from musehub.client.layout import CheckoutReport, LayoutError, MuseDir, check_branch_name
from musehub.client.progress import ByteProgress
from musehub.client.unpack import PackError, UnpackCounts, unpack_into
from musehub.client.wire import URL_ANSWER_MAX_BYTES, InlinePack, MPackURL, MuseRemote, RemoteRefs

ORIGIN = "origin"


@dataclass(frozen=True)
class CloneResult:
    dest: Path
    default_branch: str
    head_commit_id: str
    commits: int
    snapshots: int
    objects: int
    files: int
    bytes: int  # pack bytes received
    seconds: float
    via_url: bool
    skipped_paths: tuple[str, ...] = ()


async def clone(
    url: str,
    dest: Path,
    *,
    progress: bool = True,
    transport: httpx.AsyncBaseTransport | None = None,
    stderr: TextIO | None = None,
) -> CloneResult:
    """Clone ``url`` into ``dest``; raises ``CloneError`` with a message a person can act on."""
    started = time.monotonic()
    dest, created = await asyncio.to_thread(_claim_destination, dest)
    try:
        async with MuseRemote(url, transport=transport) as remote:
            refs = await _remote_refs(remote, url)
            pack, pack_bytes, via_url = await _receive_pack(
                remote, refs, dest.parent, progress, stderr
            )
        # Unpacking and checkout are disk-bound: keep them off the event loop.
        result = await asyncio.to_thread(_write_repository, url, dest, refs, pack)
    except BaseException:
        _release_destination(dest, created)
        raise
    return CloneResult(
        dest=dest,
        default_branch=result.branch,
        head_commit_id=result.head,
        commits=result.counts.commits,
        snapshots=result.counts.snapshots,
        objects=result.counts.objects,
        files=result.checkout.files,
        bytes=pack_bytes,
        seconds=time.monotonic() - started,
        via_url=via_url,
        skipped_paths=tuple(result.checkout.skipped_paths),
    )


def default_dest(url: str) -> Path:
    """The directory a clone goes to when none is given: the URL's last segment."""
    return Path(url.rstrip("/").rsplit("/", 1)[-1] or "muse-repo")


async def _remote_refs(remote: MuseRemote, url: str) -> RemoteRefs:
    try:
        refs = await remote.refs()
    except RemoteError as exc:
        raise CloneError(
            f"cannot read {url}/refs ({exc}); check the URL and that the hub is up"
        ) from exc
    if not refs.branch_heads:
        raise CloneError(f"{url} has no branches yet: there is nothing to clone, push to it first")
    try:
        for branch in refs.branch_heads:
            check_branch_name(branch)
    except LayoutError as exc:
        raise CloneError(f"{exc}; the remote is not safe to clone") from exc
    return refs


async def _receive_pack(
    remote: MuseRemote, refs: RemoteRefs, spool_dir: Path, progress: bool, stderr: TextIO | None
) -> tuple[Path, int, bool]:
    """Fetch the whole history; return the pack file, its size, and whether it came by URL."""
    want = sorted(set(refs.branch_heads.values()))
    bar = (
        ByteProgress("Receiving pack", stream=stderr, min_bytes=URL_ANSWER_MAX_BYTES)
        if progress
        else None
    )
    try:
        answer = await remote.fetch(
            want, [], ("mpack-url",), spool_dir=spool_dir, on_bytes=bar.advance if bar else None
        )
    except RemoteError as exc:
        raise CloneError(f"the hub could not send the history ({exc}); try again later") from exc
    if bar:
        bar.finish()
    if isinstance(answer, InlinePack):
        return answer.path, answer.size, False
    return await _download(remote, answer, spool_dir, progress, stderr), answer.size, True


async def _download(
    remote: MuseRemote, answer: MPackURL, spool_dir: Path, progress: bool, stderr: TextIO | None
) -> Path:
    fd, name = tempfile.mkstemp(prefix=".muse-clone-", suffix=".mpack", dir=spool_dir)
    os.close(fd)  # download_verified reopens it; mkstemp just reserves a unique name
    path = Path(name)
    bar = ByteProgress("Downloading pack", answer.size, stream=stderr) if progress else None
    try:
        await download_verified(
            remote.http,
            answer.url,
            path,
            expected_size=answer.size,
            expected_sha256=answer.sha256,
            progress=bar,
        )
    finally:
        if bar:
            bar.finish()
    return path


@dataclass(frozen=True)
class _Written:
    counts: UnpackCounts
    branch: str
    head: str
    checkout: CheckoutReport


def _write_repository(url: str, dest: Path, refs: RemoteRefs, pack: Path) -> _Written:
    """Lay out ``.muse`` from the pack and ``/refs``, then check out the default branch."""
    default_branch = refs.default_branch
    if default_branch not in refs.branch_heads:
        default_branch = sorted(refs.branch_heads)[0]  # the real client falls back likewise
    head = refs.branch_heads[default_branch]
    repo = MuseDir(dest)
    try:
        return _lay_out(url, repo, refs, pack, default_branch, head)
    finally:
        pack.unlink(missing_ok=True)


def _lay_out(
    url: str, repo: MuseDir, refs: RemoteRefs, pack: Path, default_branch: str, head: str
) -> _Written:
    try:
        repo.init(repo_id=refs.repo_id, domain=refs.domain, default_branch=default_branch)
        counts = unpack_into(pack, repo)
        for branch, commit_id in sorted(refs.branch_heads.items()):
            if repo.read_commit(commit_id) is None:
                raise CloneError(
                    f"the pack lacks commit {commit_id}, the head of {branch!r}; "
                    "the hub sent an incomplete history, try again or report it"
                )
            repo.set_branch(branch, commit_id)
            repo.set_remote_head(ORIGIN, branch, commit_id)
        repo.write_remote_config(ORIGIN, url, default_branch)
        report = repo.checkout(head)
    except PackError as exc:
        raise CloneError(f"the pack from {url} is not valid: {exc}") from exc
    except LayoutError as exc:
        raise CloneError(f"cannot check out {default_branch!r}: {exc}") from exc
    except OSError as exc:
        raise CloneError(f"cannot write to {repo.root}: {exc}") from exc
    return _Written(counts, default_branch, head, report)


def _claim_destination(dest: Path) -> tuple[Path, bool]:
    """Refuse a non-empty ``dest``; create it. Returns its absolute path and if we created it."""
    dest = dest.absolute()
    if dest.exists():
        if not dest.is_dir():
            raise CloneError(f"{dest} exists and is not a directory; choose another destination")
        if any(dest.iterdir()):
            raise CloneError(f"{dest} exists and is not empty; choose an empty or new directory")
        return dest, False
    try:
        dest.mkdir(parents=True)
    except OSError as exc:
        raise CloneError(f"cannot create {dest}: {exc}") from exc
    return dest, True


def _release_destination(dest: Path, created: bool) -> None:
    """Undo a failed clone: remove what we made, keep a directory that was there (empty)."""
    if created:
        shutil.rmtree(dest, ignore_errors=True)
        return
    for child in dest.iterdir() if dest.is_dir() else ():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
