"""``muse clone``: copy a remote repository into a fresh directory and check out its default branch.

Sequence (docs/wire-protocol.md): ``POST /fetch`` with ``want = []`` (every branch head),
``have = []``, ``capabilities``: ``mpack-chain``, ``mpack-url``, ``mpack-zstd``, ``mpack-refs``,
answered with the refs and the packs; a hub without ``mpack-refs`` gets what muse 0.1.5 sends,
``GET /refs`` → ``POST /fetch`` with ``want`` = every branch head (deduped, sorted). The packs (a
chain's base and top-ups, or one pack; the zstd copies where the hub has them) are decoded
*while they download* (``parts.stream_parts`` feeds ``unpack.unpack_streams``, a few parts
downloading at once, each through ``encoding.decoding`` when compressed and a bounded
``pipe.BytePipe``; files are written by a small thread pool and the head's tree is checked out on
the way) → each part's size and sha256 are checked as its last byte comes in → refs from the
refs answer → the staged ``.muse`` is renamed into place. An inline answer (a hub without
``mpack-url``) is spooled to a file first and unpacked the same way.

Until that final rename nothing in ``dest`` looks like a repository, and a failed clone leaves
``dest`` as it found it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, NamedTuple, TextIO

from musehub.client.clone_request import CAPABILITIES, ORIGIN, clone_capabilities
from musehub.client.errors import CloneError, RemoteError
from musehub.client.layout import LayoutError, MuseDir, check_branch_name
from musehub.client.parts import Decode, newest_first, refresh_by_fetch, stream_parts
from musehub.client.pipe import PipeAborted
from musehub.client.progress import ByteProgress
from musehub.client.unpack import PackError, Unpacked, unpack_stream, unpack_streams
from musehub.client.wire import URL_ANSWER_MAX_BYTES, InlinePack, MPackURL, MuseRemote, RemoteRefs

if TYPE_CHECKING:
    import httpx

    from musehub.client.early import EarlyRequest

__all__ = ["CAPABILITIES", "ORIGIN", "CloneResult", "clone", "default_dest", "download_into"]


class CloneResult(NamedTuple):  # not a dataclass: see download.PackPart
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
    parts: int = 0  # packs downloaded by URL: a chain's base and top-ups, or one


async def clone(
    url: str,
    dest: Path,
    *,
    progress: bool = True,
    transport: httpx.AsyncBaseTransport | None = None,
    stderr: TextIO | None = None,
    zstd: bool = True,
    early: EarlyRequest | None = None,
) -> CloneResult:
    """Clone ``url`` into ``dest``; raises ``CloneError`` with a message a person can act on.
    ``zstd=False`` asks for the uncompressed pack. ``early``: the first request, already sent
    (``early.send_head_set_request`` with the same capabilities)."""
    capabilities = clone_capabilities(zstd)
    started = time.monotonic()
    dest, created = _claim_destination(dest)
    staging: Path | None = None
    try:
        async with MuseRemote(url, transport=transport, early=early) as remote:
            refs, answer = await _refs_and_answer(
                remote, url, capabilities, dest.parent, progress, stderr
            )
            branch, head = _default_head(refs)
            want = sorted(set(refs.branch_heads.values()))
            with _as_clone_error(url, dest, branch):
                staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.muse-", dir=dest.parent))
                repo = MuseDir(dest, staging=staging)
                init = functools.partial(
                    repo.init, repo_id=refs.repo_id, domain=refs.domain, default_branch=branch
                )
                if isinstance(answer, MPackURL):
                    unpacked = await download_into(
                        remote,
                        want,
                        [],
                        capabilities,
                        answer,
                        repo,
                        head=head,
                        progress=progress,
                        stderr=stderr,
                        init=init,
                    )
                else:
                    init()
                    unpacked = await asyncio.to_thread(_unpack_file, answer.path, repo, head)
                _finish(url, repo, refs, branch)
    except BaseException:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        _release_destination(dest, created)
        raise
    return CloneResult(
        dest=dest,
        default_branch=branch,
        head_commit_id=head,
        commits=unpacked.counts.commits,
        snapshots=unpacked.counts.snapshots,
        objects=unpacked.counts.objects,
        files=unpacked.checkout.files,
        bytes=answer.size,
        seconds=time.monotonic() - started,
        via_url=isinstance(answer, MPackURL),
        skipped_paths=tuple(unpacked.checkout.skipped_paths),
        parts=len(answer.parts) if isinstance(answer, MPackURL) else 0,
    )


def default_dest(url: str) -> Path:
    """The directory a clone goes to when none is given: the URL's last segment."""
    return Path(url.rstrip("/").rsplit("/", 1)[-1] or "muse-repo")


async def _refs_and_answer(
    remote: MuseRemote,
    url: str,
    capabilities: tuple[str, ...],
    spool_dir: Path,
    progress: bool,
    stderr: TextIO | None,
) -> tuple[RemoteRefs, MPackURL | InlinePack]:
    """The refs and the answer for every branch head: in one round trip from a hub that takes
    ``mpack-refs``, else ``GET /refs`` then ``POST /fetch`` (what muse 0.1.5 does)."""
    try:
        together = await remote.head_set_answer(capabilities)
    except RemoteError as exc:
        if exc.status == 0:  # no HTTP answer at all
            raise CloneError(f"{exc}; check the URL and that the hub is up") from exc
        raise CloneError(f"the hub could not send the history ({exc}); try again later") from exc
    if together is not None:
        refs, answer = _checked_refs(together[0], url), together[1]
        if answer is not None:  # None only without branches, which _checked_refs refuses
            return refs, answer
    refs = await _remote_refs(remote, url)
    want = sorted(set(refs.branch_heads.values()))
    return refs, await _fetch(remote, want, capabilities, spool_dir, progress, stderr)


async def _remote_refs(remote: MuseRemote, url: str) -> RemoteRefs:
    try:
        refs = await remote.refs()
    except RemoteError as exc:
        raise CloneError(
            f"cannot read {url}/refs ({exc}); check the URL and that the hub is up"
        ) from exc
    return _checked_refs(refs, url)


def _checked_refs(refs: RemoteRefs, url: str) -> RemoteRefs:
    if not refs.branch_heads:
        raise CloneError(f"{url} has no branches yet: there is nothing to clone, push to it first")
    try:
        for branch in refs.branch_heads:
            check_branch_name(branch)
    except LayoutError as exc:
        raise CloneError(f"{exc}; the remote is not safe to clone") from exc
    return refs


def _default_head(refs: RemoteRefs) -> tuple[str, str]:
    branch = refs.default_branch
    if branch not in refs.branch_heads:
        branch = sorted(refs.branch_heads)[0]  # the real client falls back likewise
    return branch, refs.branch_heads[branch]


async def _fetch(
    remote: MuseRemote,
    want: list[str],
    capabilities: tuple[str, ...],
    spool_dir: Path,
    progress: bool,
    stderr: TextIO | None,
) -> MPackURL | InlinePack:
    """``POST /fetch`` for the whole history: a pack URL, or an inline pack spooled to a file."""
    bar = (
        ByteProgress("Receiving pack", stream=stderr, min_bytes=URL_ANSWER_MAX_BYTES)
        if progress
        else None
    )
    try:
        answer = await remote.fetch(
            want, [], capabilities, spool_dir=spool_dir, on_bytes=bar.advance if bar else None
        )
    except RemoteError as exc:
        raise CloneError(f"the hub could not send the history ({exc}); try again later") from exc
    if bar:
        bar.finish()
    return answer


async def download_into(
    remote: MuseRemote,
    want: list[str],
    have: list[str],
    capabilities: tuple[str, ...],
    answer: MPackURL,
    repo: MuseDir,
    *,
    head: str | None,
    progress: bool,
    stderr: TextIO | None,
    init: Callable[[], None] | None = None,
) -> Unpacked:
    """Download the answer's packs and decode them into ``repo`` in a thread as they arrive
    (checking out ``head`` on the way when given); good only once this returns (each part's
    size and sha256 are checked before the decoder sees its end). Clone and pull share it.
    ``init`` (a new repository's folders) runs first in the decoder's thread, while the first
    bytes are on their way."""
    bar = ByteProgress(_download_label(answer), answer.size, stream=stderr) if progress else None
    decode = functools.partial(unpack_streams, repo=repo, head=head)
    try:
        return await stream_parts(
            remote.http,
            newest_first(answer.parts),
            decode if init is None else functools.partial(_init_then, init, decode),
            refresh=refresh_by_fetch(remote, want, have, capabilities),
            progress=bar,
        )
    finally:
        if bar:
            bar.finish()


def _init_then(
    init: Callable[[], None], decode: Decode[Unpacked], readers: Iterator[BinaryIO]
) -> Unpacked:
    init()
    return decode(readers)


def _download_label(answer: MPackURL) -> str:
    count = len(answer.parts)
    return "Downloading pack" if count == 1 else f"Downloading {count} packs"


def _unpack_file(pack: Path, repo: MuseDir, head: str) -> Unpacked:
    try:
        with pack.open("rb") as fp:
            return unpack_stream(fp, repo, head=head)
    finally:
        pack.unlink(missing_ok=True)


def _finish(url: str, repo: MuseDir, refs: RemoteRefs, default_branch: str) -> None:
    """Refs from ``/refs``, the remote's config, then the rename that makes ``.muse`` exist."""
    for branch, commit_id in sorted(refs.branch_heads.items()):
        if repo.read_commit(commit_id) is None:
            raise CloneError(
                f"the pack lacks commit {commit_id}, the head of {branch!r}; "
                "the hub sent an incomplete history, try again or report it"
            )
        repo.set_branch(branch, commit_id)
        repo.set_remote_head(ORIGIN, branch, commit_id)
    repo.write_remote_config(ORIGIN, url, default_branch)
    repo.publish()


@contextlib.contextmanager
def _as_clone_error(url: str, dest: Path, branch: str) -> Iterator[None]:
    try:
        yield
    except PackError as exc:
        raise CloneError(f"the pack from {url} is not valid: {exc}") from exc
    except LayoutError as exc:
        raise CloneError(f"cannot check out {branch!r}: {exc}") from exc
    except PipeAborted:
        raise
    except OSError as exc:
        raise CloneError(f"cannot write to {dest}: {exc}") from exc


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
