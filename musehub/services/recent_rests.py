"""Recent pull answers, kept in this process for about a second.

A pull after a push (CI runners, collaborators) asks for the rest of a want set's chain after
the position its `have` holds. The chain is looked up once a second per want set (a
`WarmAnswers` of chains, so no database work in between) and the position is found in it in
memory; what is kept here is the answer built from them: the parts after that position,
checked in storage and presigned, and for clients that take one URL, the parts joined into one
pack. The key holds the rest's own parts,
so a push or a compaction that changes the chain changes the key: an answer kept here is never
one the chain no longer gives."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable

from musehub.services.fetch_answer import FetchAnswer

# (owner, slug, want set, the rest's part keys)
RestKey = tuple[str, str, tuple[str, ...], tuple[str, ...]]


class RecentRests:
    def __init__(self, ttl_seconds: float, max_entries: int = 10_000) -> None:
        self._ttl = ttl_seconds
        self._max = max_entries
        self._answers: OrderedDict[RestKey, tuple[FetchAnswer, float]] = OrderedDict()
        self._making: dict[Hashable, asyncio.Future[FetchAnswer | None]] = {}

    async def once(
        self, key: Hashable, make: Callable[[], Awaitable[FetchAnswer | None]]
    ) -> FetchAnswer | None:
        """`make()`, run once for all the callers that ask for `key` while it runs: a herd of
        pulls of the newest push (50 CI runners at once) checks the rest's parts in storage and
        presigns them once, not once per request (each with its own database session, queued
        behind the pool: 170-200 ms each under load where one takes a few)."""
        making = self._making.get(key)
        if making is None:
            making = asyncio.ensure_future(make())
            self._making[key] = making
            making.add_done_callback(lambda _: self._making.pop(key, None))
        return await asyncio.shield(making)

    def get(self, key: RestKey) -> FetchAnswer | None:
        kept = self._answers.get(key)
        if kept is None or time.monotonic() - kept[1] > self._ttl:
            return None
        return kept[0]

    def put(self, key: RestKey, answer: FetchAnswer) -> None:
        if self._ttl <= 0:
            return
        self._answers[key] = (answer, time.monotonic())
        self._answers.move_to_end(key)
        while len(self._answers) > self._max:
            self._answers.popitem(last=False)

    def forget_repo(self, owner: str, slug: str) -> None:
        for key in [k for k in self._answers if k[0] == owner and k[1] == slug]:
            del self._answers[key]
