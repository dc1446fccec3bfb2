"""The `musehub` command: parse (musehub/cli/parser.py), then load and run one handler."""

from __future__ import annotations

import importlib
import sys

from musehub.cli.parser import build_parser

# typing's own TYPE_CHECKING would import typing (3 ms of every `--help`); checkers know this
# name.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence

    Handler = Callable[[argparse.Namespace], int]

# Commands that only talk to a hub over HTTP: they run without httpx's own command line, which
# its package imports when it can (click and pygments, a fifth of what `import httpx` costs).
_CLIENT_COMMANDS = frozenset({"clone", "pull"})
# The cycle collector's thresholds for those commands (`_calm_gc`).
CLIENT_GC_THRESHOLDS = (100_000, 50, 100)


def load_handler(name: str) -> Handler:
    module, _, function = name.partition(":")
    handler: Handler = getattr(importlib.import_module(module), function)
    return handler


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    client = args.command in _CLIENT_COMMANDS
    if client:
        sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]  # httpx falls back
    try:
        handler = load_handler(args.handler)
        if client:
            _calm_gc()
        return handler(args)
    except KeyboardInterrupt:
        return 130
    except RuntimeError as exc:
        print(f"musehub {args.command}: error: {exc}", file=sys.stderr)
        return 1


def _calm_gc() -> None:
    """A clone allocates a dict or two per record (commits, snapshots and their manifests) by
    the thousand: with the default thresholds Python's cycle collector ran over them, and over
    every module object, a few hundred times (6-7 % of a gabriel clone's CPU in perf). Records
    form no cycles and are freed by reference counting; the modules loaded so far stay alive."""
    import gc

    gc.freeze()
    gc.set_threshold(*CLIENT_GC_THRESHOLDS)


if __name__ == "__main__":
    sys.exit(main())
