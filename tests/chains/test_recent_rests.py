"""A herd of pulls of the newest push checks and presigns the rest once (`RecentRests.once`)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from musehub.services.fetch import FetchMPack
from musehub.services.fetch_answer import FetchAnswer
from musehub.services.recent_rests import RecentRests

PACK = FetchMPack("mpacks/r/x.mpack", 10, "ab" * 32, "http://hub/x", datetime.now(UTC), "HIT")
ANSWER = FetchAnswer.of_pack(PACK, {"main": "c1"})


class Slow:
    def __init__(self, answer: FetchAnswer | None = ANSWER) -> None:
        self.calls = 0
        self.release = asyncio.Event()
        self.answer = answer

    async def __call__(self) -> FetchAnswer | None:
        self.calls += 1
        await self.release.wait()
        return self.answer


async def test_a_herd_makes_the_answer_once_and_the_next_ask_makes_it_again() -> None:
    rests, make = RecentRests(1.0), Slow()
    herd = [asyncio.create_task(rests.once("k", make)) for _ in range(50)]
    await asyncio.sleep(0)
    make.release.set()
    assert await asyncio.gather(*herd) == [ANSWER] * 50
    assert make.calls == 1
    assert await rests.once("k", make) is ANSWER  # done: not kept here (put does that)
    assert make.calls == 2


async def test_a_puller_that_hangs_up_does_not_cancel_the_others() -> None:
    rests, make = RecentRests(1.0), Slow()
    first = asyncio.create_task(rests.once("k", make))
    second = asyncio.create_task(rests.once("k", make))
    await asyncio.sleep(0)
    first.cancel()
    make.release.set()
    assert await second is ANSWER
    assert first.cancelled() and make.calls == 1


async def test_a_failure_reaches_every_waiter_and_other_keys_are_apart() -> None:
    rests = RecentRests(1.0)

    async def broken() -> FetchAnswer | None:
        await asyncio.sleep(0)
        raise RuntimeError("storage is down")

    other = Slow(None)
    other.release.set()
    waiting = [asyncio.create_task(rests.once("k", broken)) for _ in range(3)]
    assert await rests.once("other", other) is None
    for task in waiting:
        with pytest.raises(RuntimeError, match="storage is down"):
            await task
