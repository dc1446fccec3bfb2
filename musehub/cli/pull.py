"""`musehub pull [DIR]`: bring a clone up to date with its hub, with human output and an exit code.

Like `musehub clone`, it imports only the client, so it starts fast, and it sends its first
request (the refs and the packs beyond the clone's tips) before it imports the client at all
(`client/early.py`), so the ~100 ms the client takes to load overlap the round trip.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from musehub.client.clone_request import CAPABILITIES, ORIGIN
from musehub.client.early import EarlyRequest, send_head_set_request
from musehub.client.errors import PullError
from musehub.client.layout import LayoutError
from musehub.client.progress import format_bytes
from musehub.client.pull_request import local_tips, open_repo

if TYPE_CHECKING:
    import argparse

    import httpx

    from musehub.client.pull import PullResult

EXIT_OK = 0
EXIT_FAILED = 1


def run_pull(args: argparse.Namespace) -> int:
    return pull_command(args.dir, args.quiet)


def pull_command(
    root: Path | None = None,
    quiet: bool = False,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> int:
    """Pull into the repository at `root` (default: the current folder or the one above)."""
    root = root if root is not None else Path.cwd()
    early = send_early(root) if transport is None else None
    import asyncio
    import gc

    from musehub.client.pull import pull

    gc.freeze()  # the client's modules, loaded only now, out of the collector's way too (main.py)
    try:
        result = asyncio.run(pull(root, progress=not quiet, transport=transport, early=early))
    except PullError as exc:
        print(f"pull failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        if early is not None:
            early.close()  # unclaimed when the pull stopped before its first request
    if result.outcome == "diverged":
        print(
            f"pull fetched the remote, but {result.branch} and origin/{result.branch} have "
            "diverged (each has commits the other lacks): merge them with `muse pull`; "
            "musehub pull only fast-forwards",
            file=sys.stderr,
        )
        return EXIT_FAILED
    if not quiet:
        print_pull_result(result)
    return EXIT_OK


def send_early(root: Path) -> EarlyRequest | None:
    """The pull's first request, sent now; None where the pull itself will say what is wrong
    (no repository here, no remote, unreadable refs)."""
    try:
        repo = open_repo(root)
        url = repo.remote_url(ORIGIN)
        return None if url is None else send_head_set_request(url, CAPABILITIES, local_tips(repo))
    except (PullError, LayoutError, OSError):
        return None


def print_pull_result(result: PullResult, out: TextIO | None = None) -> None:
    out = out if out is not None else sys.stdout
    if result.bytes or result.counts.commits:
        how = f"{result.parts} pack(s)" if result.parts else "inline"
        out.write(
            f"Fetched {result.counts.commits} commits, {result.counts.snapshots} snapshots, "
            f"{result.counts.objects} objects, {format_bytes(result.bytes)} ({how}) "
            f"in {result.seconds:.2f} s\n"
        )
    short = (result.new_head or "")[:12]
    lines = {
        "up to date": f"{result.branch} is up to date at {short}",
        "fast-forward": f"fast-forwarded {result.branch} to {short}",
        "reset": f"{result.branch} was force-pushed on the remote: reset to {short} "
        "(it had no commits of its own)",
        "ahead": f"{result.branch} is ahead of origin/{result.branch}: nothing to update",
        "not on remote": f"{result.branch} is not on the remote (deleted?): left as it is",
    }
    out.write(lines.get(result.outcome, result.outcome) + "\n")
    if result.files_written or result.files_removed:
        out.write(f"  {result.files_written} files written, {result.files_removed} removed\n")
    for branch in result.pruned:
        out.write(f"  origin/{branch} is gone from the remote: dropped its tracking pointer\n")
    for path in result.skipped_paths:
        out.write(f"  warning: skipped unsafe path {path!r}\n")
