"""A repo's refs kept by an API process are forgotten the moment they change, whichever process
or hand changed them (`refs_changes.py`, the triggers of migration 0007); while that cannot be
heard, they are looked up on every request."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import text

from musehub.metrics import REFS_LISTENING
from musehub.services.fetch import FetchMPacks
from musehub.services.refs_changes import RefsChanges
from tests.conftest import Hub, serving_hub
from tests.mpack.helpers import VECTOR_HEADS
from tests.wire.helpers import PushedRepo, decode, push_vector, push_vector_branch
from tests.wire.test_fetch_head_set import CLONE_CAPS, head_set

MAIN, CHORUS = VECTOR_HEADS["main"], VECTOR_HEADS["chorus"]
# Well under the second refs are kept for: seen this soon, the change was heard.
AT_ONCE_S = 0.5


async def heads(hub: Hub, repo: PushedRepo) -> Any:
    return decode(await head_set(hub, repo.owner, repo.slug, CLONE_CAPS))["branch_heads"]


async def within(seconds: float, probe: Callable[[], Awaitable[Any]], expected: Any) -> Any:
    """What `probe` gave when it first gave `expected`, or its last answer at the deadline."""
    deadline = time.monotonic() + seconds
    while True:
        seen = await probe()
        if seen == expected or time.monotonic() > deadline:
            return seen
        await asyncio.sleep(0.01)


async def wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def until_listening(fetch: FetchMPacks) -> None:
    await wait_until(lambda: fetch.keeps_refs)


async def delete_branch(hub: Hub, repo: PushedRepo, branch: str) -> None:
    """By hand: the wire protocol has no branch delete."""
    async with hub.engine.begin() as connection:
        await connection.execute(
            text("DELETE FROM musehub_branches WHERE repo_id = :r AND name = :b"),
            {"r": repo.repo_id, "b": branch},
        )


@pytest.mark.local_storage_only
async def test_a_push_through_another_process_is_seen_at_once(hub: Hub) -> None:
    repo = await push_vector(hub, branches=("main",))
    listening = REFS_LISTENING._value.get()
    async for other in serving_hub(hub.engine, hub.settings):  # a second API process
        await until_listening(other.app.state.parts.fetch)
        assert REFS_LISTENING._value.get() == listening + 1  # this process's apps, counted
        assert await heads(other, repo) == {"main": MAIN}  # kept there now
        await push_vector_branch(hub, repo.owner, repo.slug, repo.token, "chorus")
        expected = {"main": MAIN, "chorus": CHORUS}
        probe = functools.partial(heads, other, repo)
        assert await within(AT_ONCE_S, probe, expected) == expected
    assert REFS_LISTENING._value.get() == listening  # stopped: it no longer counts


async def test_a_branch_deleted_by_hand_is_seen_at_once(hub: Hub) -> None:
    repo = await push_vector(hub, branches=("main", "chorus"))
    await until_listening(hub.app.state.parts.fetch)
    assert await heads(hub, repo) == {"main": MAIN, "chorus": CHORUS}
    await delete_branch(hub, repo, "chorus")
    assert await within(AT_ONCE_S, lambda: heads(hub, repo), {"main": MAIN}) == {"main": MAIN}


async def test_refs_are_kept_only_while_changes_are_heard(hub: Hub) -> None:
    """A process that does not hear changes looks the refs up on every request; one that
    believes it hears them keeps them (here nothing tells it, so it stays stale)."""
    repo = await push_vector(hub, branches=("main", "chorus"))
    deaf = FetchMPacks(hub.engine, hub.storage, hub.settings)  # no RefsChanges behind it

    async def heads_of(fetch: FetchMPacks) -> dict[str, str]:
        found, _ = await fetch.answer_head_set(repo.owner, repo.slug, None, form="url")
        return found.branch_heads

    trusting = FetchMPacks(hub.engine, hub.storage, hub.settings)
    trusting.refs_listening(True)
    assert await heads_of(deaf) == await heads_of(trusting) == {"main": MAIN, "chorus": CHORUS}
    await delete_branch(hub, repo, "chorus")
    assert await heads_of(deaf) == {"main": MAIN}
    assert await heads_of(trusting) == {"main": MAIN, "chorus": CHORUS}
    trusting.refs_listening(False)  # the connection was lost: what was kept goes
    assert await heads_of(trusting) == {"main": MAIN}


async def test_the_listener_listens_again_after_its_connection_is_killed(hub: Hub) -> None:
    repo = await push_vector(hub, branches=("main", "chorus"))
    changes: list[tuple[str, str]] = []
    states: list[bool] = []
    listener = RefsChanges(
        hub.engine, lambda *repo: changes.append(repo), states.append, keepalive_s=60
    )
    task = asyncio.create_task(listener.run())
    try:
        await wait_until(lambda: listener.backend_pid is not None)
        async with hub.engine.begin() as connection:
            await connection.execute(
                text("SELECT pg_terminate_backend(:pid)"), {"pid": listener.backend_pid}
            )
        await wait_until(lambda: states == [True, False, True])  # listening, lost, listening
        await delete_branch(hub, repo, "chorus")
        await wait_until(lambda: (repo.owner, repo.slug) in changes)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert states == [True, False, True, False]  # and not listening once stopped


class _Deaf(RefsChanges):
    """Hears nothing on its channel, as through a pooler in transaction mode (PgBouncer's
    default), which takes the LISTEN and delivers nothing."""

    def _notified(self, *_: object) -> None:
        pass


async def test_a_listener_that_cannot_hear_its_own_probe_never_says_it_listens(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    states: list[bool] = []
    task = asyncio.create_task(_Deaf(hub.engine, print, states.append, keepalive_s=0.2).run())
    try:
        await wait_until(lambda: "did not come back" in caplog.text)
        await asyncio.sleep(0.5)  # it tries again, still deaf
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert True not in states  # refs were never kept on its word
