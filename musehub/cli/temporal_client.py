"""What the CLI commands that talk to Temporal share: a connection that explains a failure, and
an exit that skips CPython's teardown once a Temporal client was used."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn

from temporalio.client import Client

from musehub.settings import Settings
from musehub.temporal import connect, temporal_address


async def connect_or_explain(settings: Settings) -> Client:
    try:
        return await asyncio.wait_for(connect(settings), 10)
    except Exception as exc:
        where = temporal_address(settings)
        raise RuntimeError(f"cannot reach Temporal at {where}: {exc}") from None


def run_then_exit(command: str, work: Callable[[], Coroutine[Any, Any, None]]) -> NoReturn:
    """Run `work`, then end the process at once: the Temporal SDK's threads can abort CPython's
    teardown after a client was used (temporalio/sdk-python#300), turning success into -6."""
    try:
        asyncio.run(work())
        code = 0
    except KeyboardInterrupt:
        code = 130
    except RuntimeError as exc:
        print(f"musehub {command}: error: {exc}", file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
