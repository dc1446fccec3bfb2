"""`musehub synth URL`: generate a deterministic repository (a preset, overridable) and push it
through the hub's wire endpoints, with human output and an exit code."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from dataclasses import replace

import httpx

from musehub.client.errors import PushRejected, RemoteError
from musehub.client.wire import MuseRemote
from musehub.synth import PRESETS, SynthParams, SynthPushReport, SynthRepo, push_synth

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def run_synth(args: argparse.Namespace) -> int:
    return synth_command(
        args.url,
        args.token,
        args.preset,
        commits=args.commits,
        files=args.files,
        file_size=args.file_size,
        branches=args.branches,
        blobs=args.blobs,
        seed=args.seed,
        scale=args.scale,
        quiet=args.quiet,
    )


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
    """Generate the repository `preset` (with any explicit value overriding it) and push it."""
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
