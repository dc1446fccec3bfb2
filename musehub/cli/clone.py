"""`musehub clone URL [DIR]`: clone a repository from a hub, with human output and an exit code.

Imports only the client (`musehub/client/`), never the synthetic generator or the server's
stack, so the command starts fast; and it sends the clone's first request before it imports
the client at all (`client/early.py`): asyncio and the client take ~100 ms to load, which the
request's round trip then overlaps. A user's mistake prints one line and returns an exit code.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from musehub.client.clone_request import clone_capabilities
from musehub.client.early import send_head_set_request

if TYPE_CHECKING:
    import argparse

    import httpx

    from musehub.client.clone import CloneResult

EXIT_OK = 0
EXIT_FAILED = 1


def run_clone(args: argparse.Namespace) -> int:
    return clone_command(args.url, args.dest, args.quiet, zstd=args.zstd)


def clone_command(
    url: str,
    dest: Path | None = None,
    quiet: bool = False,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    zstd: bool = True,
) -> int:
    """Clone `url` into `dest` (default: the URL's last segment); check out the default branch."""
    early = send_head_set_request(url, clone_capabilities(zstd)) if transport is None else None
    import asyncio
    import gc

    from musehub.client.clone import clone, default_dest
    from musehub.client.errors import CloneError

    gc.freeze()  # the client's modules, loaded only now, out of the collector's way too (main.py)
    target = dest if dest is not None else default_dest(url)
    try:
        result = asyncio.run(
            clone(
                url,
                target,
                progress=not quiet,
                transport=transport,
                zstd=zstd,
                early=early,
            )
        )
    except CloneError as exc:
        print(f"clone failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        if early is not None:
            early.close()  # unclaimed when the clone stopped before its first request
    if not quiet:
        print_clone_result(result, url)
    return EXIT_OK


def print_clone_result(result: CloneResult, url: str, out: TextIO | None = None) -> None:
    out = out if out is not None else sys.stdout
    mib = result.bytes / (1024 * 1024)
    how = "inline"
    if result.via_url:
        how = "pack URL" if result.parts == 1 else f"a chain of {result.parts} packs"
    out.write(
        f"Cloned {url} into {result.dest}\n"
        f"  {result.commits} commits, {result.snapshots} snapshots, {result.objects} objects, "
        f"{mib:.1f} MiB ({how}) in {result.seconds:.2f} s\n"
        f"  checked out {result.default_branch} at {result.head_commit_id[:12]} "
        f"({result.files} files)\n"
    )
    for path in result.skipped_paths:
        out.write(f"  warning: skipped unsafe path {path!r}\n")
