"""The `musehub` command: parse (musehub/cli/parser.py), then load and run one handler."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from musehub.cli.parser import build_parser

Handler = Callable[[argparse.Namespace], int]


def load_handler(name: str) -> Handler:
    module, _, function = name.partition(":")
    handler: Handler = getattr(importlib.import_module(module), function)
    return handler


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return load_handler(args.handler)(args)
    except KeyboardInterrupt:
        return 130
    except RuntimeError as exc:
        print(f"musehub {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
