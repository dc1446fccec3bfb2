"""`musehub clone` and `musehub synth`: the client side, talking to a hub over HTTP."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from musehub.client.commands import clone_command, synth_command
from musehub.synth.params import PRESETS


def register(commands: Any) -> None:
    clone = commands.add_parser("clone", help="clone a repository: musehub clone URL [DIR]")
    clone.add_argument("url", help="remote URL, e.g. http://127.0.0.1:8000/alice/song")
    clone.add_argument(
        "dest", nargs="?", type=Path, help="folder to create (default: the repo name)"
    )
    clone.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    clone.set_defaults(handler=run_clone)

    synth = commands.add_parser(
        "synth", help="generate a deterministic synthetic repository and push it to URL"
    )
    synth.add_argument("url", help="remote URL of an existing (empty) repository")
    synth.add_argument(
        "--token",
        default=os.environ.get("MUSEHUB_TOKEN"),
        help="push token of the repo's owner (default: $MUSEHUB_TOKEN)",
    )
    synth.add_argument("--preset", choices=sorted(PRESETS), default="gabriel-muse")
    synth.add_argument("--commits", type=int)
    synth.add_argument("--files", type=int)
    synth.add_argument("--file-size", type=int, help="mean file size in bytes")
    synth.add_argument("--branches", type=int)
    synth.add_argument("--blobs", type=int, help="distinct blobs over the whole history")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--scale", type=int, default=1, help="multiply history and blob bytes")
    synth.add_argument("-q", "--quiet", action="store_true")
    synth.set_defaults(handler=run_synth)


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
