"""A build step for tips a newer push replaced stops on the worker, within a fraction of a
second, instead of finishing a pack no clone will ask for."""

from __future__ import annotations

import asyncio
import time

import pytest

from musehub.db.engine import session_factory
from musehub.services.superseded import SUPERSEDED_CHECK_SECONDS, Superseded, unless_superseded
from tests.conftest import Hub
from tests.mpack.helpers import VECTOR_HEADS, load_vector
from tests.wire.helpers import push_vector

MAIN, CHORUS = VECTOR_HEADS["main"], VECTOR_HEADS["chorus"]
OLDER = next(
    c["commit_id"] for c in load_vector()["commits"] if c["commit_id"] not in (MAIN, CHORUS)
)


class EndlessStep:
    """A build step that never finishes on its own and records being stopped."""

    def __init__(self) -> None:
        self.cancelled = False

    async def __call__(self) -> str:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        return "built"


async def test_a_step_for_replaced_tips_is_stopped(hub: Hub) -> None:
    repo = await push_vector(hub)
    step = EndlessStep()
    began = time.monotonic()
    with pytest.raises(Superseded):
        await unless_superseded(session_factory(hub.engine), repo.repo_id, [OLDER], step())
    assert step.cancelled
    assert time.monotonic() - began < SUPERSEDED_CHECK_SECONDS + 2


async def test_a_step_for_current_tips_runs_to_the_end(hub: Hub) -> None:
    repo = await push_vector(hub, branches=("main", "chorus"))

    async def slow_step() -> str:
        await asyncio.sleep(SUPERSEDED_CHECK_SECONDS * 3)  # checked a few times meanwhile
        return "built"

    sessions = session_factory(hub.engine)
    for want in (sorted([MAIN, CHORUS]), [MAIN], [CHORUS]):
        assert await unless_superseded(sessions, repo.repo_id, want, slow_step()) == "built"


async def test_the_head_set_of_an_older_push_is_replaced(hub: Hub) -> None:
    """One branch pushed: the head set {main, chorus} is not what the repo holds."""
    repo = await push_vector(hub, branches=("main",))
    with pytest.raises(Superseded):
        await unless_superseded(
            session_factory(hub.engine), repo.repo_id, sorted([MAIN, CHORUS]), EndlessStep()()
        )
