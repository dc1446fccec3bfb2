"""A prebuild step for tips a newer push replaced stops on the worker: the pack of tips that are
no longer the repo's would answer no clone, and building it would delay the pack of the new
ones. Checked here, on the worker, every SUPERSEDED_CHECK_SECONDS, because a cancel from the
workflow reaches an activity only with its next heartbeat, and the SDK throttles those to most
of the heartbeat timeout."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from musehub.contract import build_targets
from musehub.services.repos import branch_heads

T = TypeVar("T")
SUPERSEDED_CHECK_SECONDS = 0.1


class Superseded(Exception):
    """The tips being built are no longer the repo's."""


async def is_superseded(session: AsyncSession, repo_id: str, want: list[str]) -> bool:
    """True when `want` is no longer a target the repo's current heads ask for."""
    heads = await branch_heads(session, repo_id)
    return want not in build_targets(list(heads.values()))


async def unless_superseded(
    sessions: async_sessionmaker[AsyncSession],
    repo_id: str,
    want: list[str],
    step: Coroutine[Any, Any, T],
) -> T:
    """Run `step`, and cancel it and raise `Superseded` once a newer push has replaced `want`."""
    work = asyncio.ensure_future(step)
    try:
        while True:
            done, _ = await asyncio.wait({work}, timeout=SUPERSEDED_CHECK_SECONDS)
            if done:
                return work.result()
            async with sessions() as session:
                if await is_superseded(session, repo_id, want):
                    break
    finally:
        if not work.done():
            work.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await work
    raise Superseded(f"tips {want} were replaced by a newer push before their pack was built")
