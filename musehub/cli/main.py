"""The `musehub` command: one subcommand per module in this package."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from musehub.cli import client, dev, gc, rebuild, repos, schedules

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="musehub", description="MuseHub: a muse hosting service with prebuilt clone packs."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (dev, repos, rebuild, gc, schedules, client):
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130
    except RuntimeError as exc:
        print(f"musehub {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
