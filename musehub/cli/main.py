"""The `musehub` command: parse (musehub/cli/parser.py), then load and run one handler."""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING

from musehub.cli.parser import build_parser

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence

    Handler = Callable[[argparse.Namespace], int]

# Commands that only talk to a hub over HTTP: they run without httpx's own command line, which
# its package imports when it can (click and pygments, a fifth of what `import httpx` costs).
_CLIENT_COMMANDS = frozenset({"clone", "pull"})


def load_handler(name: str) -> Handler:
    module, _, function = name.partition(":")
    handler: Handler = getattr(importlib.import_module(module), function)
    return handler


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in _CLIENT_COMMANDS:
        sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]  # httpx falls back
    try:
        return load_handler(args.handler)(args)
    except KeyboardInterrupt:
        return 130
    except RuntimeError as exc:
        print(f"musehub {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
