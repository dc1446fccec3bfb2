"""Pulls no chain answers (issue 13, item 3) are single-flighted like clones: identical pulls at
once make one build, in a process and across processes, the key being the want set and the part
of `have` the repo knows (a client's unpushed commits do not count); a pull from another
position builds its own."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from musehub.services.fetch import FetchMPacks
from musehub.services.mpack_build import BuiltMPack, PackWatch
from musehub.storage import LatencyInjectingStorage
from tests.conftest import Hub
from tests.mpack.helpers import VECTOR_HEADS, load_vector
from tests.wire.helpers import push_vector
from tests.wire.test_streamed_builds import READ_DELAY, slow_fetcher, slow_settings

MAIN = VECTOR_HEADS["main"]
ROOT = next(c["commit_id"] for c in load_vector()["commits"] if not c.get("parent_commit_id"))


def counting_builds(fetcher: FetchMPacks) -> list[tuple[str, ...]]:
    """The `have` of every build the fetcher starts, in order."""
    started: list[tuple[str, ...]] = []
    real = fetcher.builds.build

    async def build(
        session: AsyncSession,
        repo_id: str,
        want: Sequence[str],
        have: Sequence[str],
        *,
        watch: PackWatch | None = None,
    ) -> BuiltMPack:
        started.append(tuple(have))
        return await real(session, repo_id, want, have, watch=watch)

    fetcher.builds.build = build
    return started


async def test_identical_pulls_at_once_make_one_build(hub: Hub) -> None:
    repo = await push_vector(hub)
    fetcher = slow_fetcher(hub)  # a build takes about a second: the pulls overlap it
    builds = counting_builds(fetcher)
    unpushed = ["e" * 64, "f" * 64]  # local commits of each client, unknown to the hub

    answers = await asyncio.gather(
        *(
            fetcher.answer(repo.owner, repo.slug, [MAIN], [ROOT, unpushed[n % 2]], None, form="url")
            for n in range(6)
        )
    )
    assert len(builds) == 1
    assert {a.cache for a in answers} == {"UNCACHED"}
    streamed = [a for a in answers if a.growing is not None]
    if not streamed:  # done within the streaming threshold: all six got its one pack's URL
        assert len({a.pack.mpack_key for a in answers if a.pack is not None}) == 1

    other = await fetcher.answer(repo.owner, repo.slug, [MAIN], [MAIN], None, form="url")
    assert other.cache == "UNCACHED"
    assert builds[1:] == [(MAIN,)]  # another position: a build of its own
    await asyncio.gather(*fetcher.builds.streamed)


def patient_fetcher(hub: Hub) -> FetchMPacks:
    """An API process whose slow builds are waited for (a waiter does not build alongside)."""
    settings = slow_settings(hub)
    api = settings.api.model_copy(update={"stream_builds_after_seconds": 30.0})
    storage = LatencyInjectingStorage(hub.storage, READ_DELAY)
    return FetchMPacks(hub.engine, storage, settings.model_copy(update={"api": api}))


async def test_the_same_pull_in_two_processes_makes_one_build(hub: Hub) -> None:
    repo = await push_vector(hub)
    first, second = patient_fetcher(hub), patient_fetcher(hub)  # two API processes
    builds = counting_builds(first)
    builds_second = counting_builds(second)

    async def pull(fetcher: FetchMPacks, unpushed: str) -> str:
        answer = await fetcher.answer(
            repo.owner, repo.slug, [MAIN], [ROOT, unpushed], None, form="url"
        )
        assert answer.cache == "UNCACHED" and answer.pack is not None
        return answer.pack.mpack_key

    keys = await asyncio.gather(pull(first, "e" * 64), pull(second, "f" * 64))
    assert len(builds) + len(builds_second) == 1
    assert keys[0] == keys[1]
    # A minute later than that it would be built again; within it, the same pack, no build.
    assert await pull(second, "0" * 64) == keys[0]
    assert len(builds) + len(builds_second) == 1
