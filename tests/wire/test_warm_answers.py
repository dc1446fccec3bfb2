"""The per-process warm answers: one lookup per want set at a time, however many clones ask."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from musehub.services.fetch import FetchMPack
from musehub.services.mpack_cache import CloneLookup
from musehub.services.warm_answers import Lookup, WarmAnswers

FOUND = CloneLookup("repo-1", "ann", "public", "code", "main", {"main": "c1"}, entry=None)
PACK = FetchMPack("mpacks/repo-1/x.mpack", 10, "ab" * 32, "http://hub/x", datetime.now(UTC), "HIT")
WANT = ["c1"]


class SlowLookup:
    """Counts its calls and answers only when released, like a database under load."""

    def __init__(self, answer: Lookup[FetchMPack] = (FOUND, PACK)) -> None:
        self.calls = 0
        self.release = asyncio.Event()
        self.answer = answer

    async def __call__(self) -> Lookup[FetchMPack]:
        self.calls += 1
        await self.release.wait()
        return self.answer


async def test_concurrent_misses_share_one_lookup_and_repeats_need_none() -> None:
    answers, lookup = WarmAnswers[FetchMPack](ttl_seconds=60), SlowLookup()
    waiting = [
        asyncio.create_task(answers.get_or_lookup("ann", "song", WANT, lookup)) for _ in range(32)
    ]
    await asyncio.sleep(0)
    lookup.release.set()
    assert await asyncio.gather(*waiting) == [(FOUND, PACK)] * 32
    assert lookup.calls == 1
    assert await answers.get_or_lookup("ann", "song", WANT, lookup) == (FOUND, PACK)
    assert lookup.calls == 1


async def test_a_caller_that_hangs_up_does_not_cancel_the_others() -> None:
    answers, lookup = WarmAnswers[FetchMPack](ttl_seconds=60), SlowLookup()
    first = asyncio.create_task(answers.get_or_lookup("ann", "song", WANT, lookup))
    second = asyncio.create_task(answers.get_or_lookup("ann", "song", WANT, lookup))
    await asyncio.sleep(0)
    first.cancel()
    lookup.release.set()
    assert await second == (FOUND, PACK)
    assert first.cancelled()


async def test_a_failed_lookup_reaches_every_waiter_and_the_next_call_tries_again() -> None:
    answers = WarmAnswers[FetchMPack](ttl_seconds=60)
    calls = 0

    async def broken() -> Lookup[FetchMPack]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        raise ConnectionError("database down")

    waiting = [
        asyncio.create_task(answers.get_or_lookup("ann", "song", WANT, broken)) for _ in range(3)
    ]
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert [type(r) for r in results] == [ConnectionError] * 3
    assert calls == 1
    with pytest.raises(ConnectionError):
        await answers.get_or_lookup("ann", "song", WANT, broken)
    assert calls == 2


async def test_nothing_prebuilt_is_not_kept() -> None:
    answers, lookup = WarmAnswers[FetchMPack](ttl_seconds=60), SlowLookup(answer=(FOUND, None))
    lookup.release.set()
    assert await answers.get_or_lookup("ann", "song", WANT, lookup) == (FOUND, None)
    assert await answers.get_or_lookup("ann", "song", WANT, lookup) == (FOUND, None)
    assert lookup.calls == 2


async def test_a_push_during_a_lookup_keeps_its_answer_out() -> None:
    answers, lookup = WarmAnswers[FetchMPack](ttl_seconds=60), SlowLookup()
    running = asyncio.create_task(answers.get_or_lookup("ann", "song", WANT, lookup))
    await asyncio.sleep(0)
    answers.forget_repo("ann", "song")  # what a push through this process does
    lookup.release.set()
    assert await running == (FOUND, PACK)  # the request in flight still gets its answer
    assert answers.get("ann", "song", WANT) is None


async def test_ttl_zero_looks_up_every_time() -> None:
    answers, lookup = WarmAnswers[FetchMPack](ttl_seconds=0), SlowLookup()
    lookup.release.set()
    for _ in range(3):
        await answers.get_or_lookup("ann", "song", WANT, lookup)
    assert lookup.calls == 3


async def test_an_expiring_answer_is_given_while_one_lookup_refreshes_it() -> None:
    answers, lookup = WarmAnswers[FetchMPack](ttl_seconds=0.05), SlowLookup()
    lookup.release.set()
    await answers.get_or_lookup("ann", "song", WANT, lookup)
    lookup.release.clear()  # the database is slow from now on
    await asyncio.sleep(0.07)  # past the TTL, within twice the TTL
    given = [await answers.get_or_lookup("ann", "song", WANT, lookup) for _ in range(5)]
    assert given == [(FOUND, PACK)] * 5  # none of them waited for the database
    await asyncio.sleep(0)  # let the background refresh start
    assert lookup.calls == 2  # one refresh for all five
    lookup.release.set()
    await asyncio.sleep(0.01)
    assert answers.get("ann", "song", WANT) is not None  # refreshed


async def test_an_answer_older_than_twice_the_ttl_waits_for_the_lookup() -> None:
    answers, lookup = WarmAnswers[FetchMPack](ttl_seconds=0.05), SlowLookup()
    lookup.release.set()
    await answers.get_or_lookup("ann", "song", WANT, lookup)
    lookup.release.clear()
    await asyncio.sleep(0.12)
    waiting = asyncio.create_task(answers.get_or_lookup("ann", "song", WANT, lookup))
    await asyncio.sleep(0.02)
    assert not waiting.done()
    lookup.release.set()
    assert await waiting == (FOUND, PACK)
