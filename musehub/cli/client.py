"""`musehub clone` and `musehub synth`: the client side, talking to a hub over HTTP."""

from __future__ import annotations

import argparse

from musehub.client.commands import clone_command, synth_command


def run_clone(args: argparse.Namespace) -> int:
    return clone_command(args.url, args.dest, args.quiet)


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
