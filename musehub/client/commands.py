"""Entry points for ``musehub clone`` and ``musehub synth``: human output and an exit code.

The lead wires these into argparse (``musehub/cli``); they never raise for a user's mistake.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TextIO

import httpx

from musehub.client.clone import CloneResult, clone, default_dest
from musehub.client.errors import CloneError, PushRejected, RemoteError
from musehub.client.wire import MuseRemote
from musehub.synth import PRESETS, SynthParams, SynthPushReport, SynthRepo, push_synth

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def clone_command(
    url: str,
    dest: Path | None = None,
    quiet: bool = False,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> int:
    """``musehub clone URL [DEST]``: clone and check out the default branch."""
    target = dest if dest is not None else default_dest(url)
    try:
        result = asyncio.run(clone(url, target, progress=not quiet, transport=transport))
    except CloneError as exc:
        print(f"clone failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if not quiet:
        print_clone_result(result, url)
    return EXIT_OK


def print_clone_result(result: CloneResult, url: str, out: TextIO | None = None) -> None:
    out = out if out is not None else sys.stdout
    mib = result.bytes / (1024 * 1024)
    how = "pack URL" if result.via_url else "inline"
    out.write(
        f"Cloned {url} into {result.dest}\n"
        f"  {result.commits} commits, {result.snapshots} snapshots, {result.objects} objects, "
        f"{mib:.1f} MiB ({how}) in {result.seconds:.2f} s\n"
        f"  checked out {result.default_branch} at {result.head_commit_id[:12]} "
        f"({result.files} files)\n"
    )
    for path in result.skipped_paths:
        out.write(f"  warning: skipped unsafe path {path!r}\n")


def synth_command(
    url: str,
    token: str | None = None,
    preset: str | None = "gabriel-muse",
    *,
    commits: int | None = None,
    files: int | None = None,
    file_size: int | None = None,
    branches: int | None = None,
    blobs: int | None = None,
    seed: int = 0,
    scale: int = 1,
    quiet: bool = False,
    transport: httpx.AsyncBaseTransport | None = None,
) -> int:
    """``musehub synth URL``: generate a repository (a preset, overridable) and push it."""
    try:
        params = synth_params(preset, commits, files, file_size, branches, blobs, seed, scale)
    except ValueError as exc:
        print(f"synth: {exc}", file=sys.stderr)
        return EXIT_USAGE
    started = time.monotonic()
    try:
        repo = params.generate()
    except ValueError as exc:
        print(f"synth: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not quiet:
        print(
            f"Generated {len(repo.commits)} commits on {len(repo.branch_heads)} branches, "
            f"{len(repo.object_ids)} blobs, {repo.total_blob_bytes / 1e6:.1f} MB "
            f"in {time.monotonic() - started:.2f} s"
        )

    def show(done: int, total: int) -> None:
        print(f"\rPushed {done}/{total} commits", end="", file=sys.stderr, flush=True)

    try:
        report = asyncio.run(_push(url, token, repo, None if quiet else show, transport))
    except (PushRejected, RemoteError, ValueError) as exc:
        print(f"\nsynth: push to {url} failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if not quiet:
        print(file=sys.stderr)
        print(f"Pushed {report.commits} commits in {report.pushes} pushes, {report.seconds:.1f} s")
        for branch, head in sorted(report.branch_heads.items()):
            print(f"  {branch}: {head[:12]}")
    return EXIT_OK


def synth_params(
    preset: str | None,
    commits: int | None,
    files: int | None,
    file_size: int | None,
    branches: int | None,
    blobs: int | None,
    seed: int,
    scale: int,
) -> SynthParams:
    """A preset with any explicit value overriding it; without a preset all four are needed."""
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
        base = PRESETS[preset]
    elif commits is None or files is None or file_size is None or branches is None:
        raise ValueError("without a preset, give --commits, --files, --file-size and --branches")
    else:
        base = SynthParams(commits, files, file_size, branches)
    overrides = {
        "commits": commits,
        "files": files,
        "file_size": file_size,
        "branches": branches,
        "blobs": blobs,
    }
    params = replace(base, seed=seed, **{k: v for k, v in overrides.items() if v is not None})
    return params.scaled(scale) if scale != 1 else params


async def _push(
    url: str,
    token: str | None,
    repo: SynthRepo,
    show: Callable[[int, int], None] | None,
    transport: httpx.AsyncBaseTransport | None,
) -> SynthPushReport:
    async with MuseRemote(url, token, transport=transport) as remote:
        return await push_synth(remote, repo, on_push=show)
