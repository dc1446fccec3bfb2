"""Recent warm-clone answers, kept in this process for about a second.

A popular repo's clone is the same answer many times a second: the pack is content-addressed
(its key never changes for a want set) and the presigned URL stays valid for minutes. Serving
repeats from memory takes the database off the hottest path entirely. What may be stale, for at
most twice `ttl`, is the `branch_heads` echo and a visibility change; the muse client sets its refs
from `/refs`, not from this echo, and a push through this process forgets its repo at once.

When an answer expires under load, every request in flight for it would look it up at once: a
burst of lookups that empties the connection pool and opens new connections, once a second, and
that burst was the 64-connection tail. So one lookup per key runs at a time, and the requests
that arrive meanwhile wait for its result."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from musehub.services.mpack_cache import CloneLookup

Key = tuple[str, str, tuple[str, ...]]
Pack = TypeVar("Pack")
# What a lookup found: the repo (None: no such repo) and its live pack (None: not prebuilt).
Lookup = tuple[CloneLookup | None, Pack | None]
LookupFn = Callable[[], Awaitable[Lookup[Pack]]]


@dataclass(frozen=True)
class WarmAnswer(Generic[Pack]):
    found: CloneLookup
    pack: Pack
    stored_at: float


class WarmAnswers(Generic[Pack]):
    def __init__(self, ttl_seconds: float, max_entries: int = 10_000) -> None:
        self._ttl = ttl_seconds
        self._max = max_entries
        self._answers: OrderedDict[Key, WarmAnswer[Pack]] = OrderedDict()
        self._lookups: dict[Key, asyncio.Task[Lookup[Pack]]] = {}

    def get(self, owner: str, slug: str, want: list[str]) -> WarmAnswer[Pack] | None:
        """The answer kept for this want set, if it is at most `ttl` old."""
        answer = self._answers.get((owner, slug, tuple(want)))
        if answer is None or time.monotonic() - answer.stored_at > self._ttl:
            return None
        return answer

    async def get_or_lookup(
        self, owner: str, slug: str, want: list[str], lookup: LookupFn[Pack]
    ) -> Lookup[Pack]:
        """The recent answer, else the result of `lookup`, run once however many requests
        ask for this key meanwhile; a found pack is kept. An answer between `ttl` and twice
        `ttl` old is still given while one lookup refreshes it in the background, so the hot
        path does not wait on a slow database (a checkpoint, a vacuum) while it has a recent
        answer; past that the caller waits for the lookup."""
        if self._ttl <= 0:
            return await lookup()
        key = (owner, slug, tuple(want))
        answer = self._answers.get(key)
        if answer is not None:
            age = time.monotonic() - answer.stored_at
            if age <= self._ttl:
                return answer.found, answer.pack
            if age <= 2 * self._ttl:
                self._lookup(key, lookup)  # refreshes it in the background
                return answer.found, answer.pack
        # Shielded: a client that hangs up must not cancel the lookup the others wait for.
        return await asyncio.shield(self._lookup(key, lookup))

    def put(self, owner: str, slug: str, want: list[str], found: CloneLookup, pack: Pack) -> None:
        if self._ttl <= 0:
            return
        self._keep((owner, slug, tuple(want)), found, pack)

    def forget_repo(self, owner: str, slug: str) -> None:
        """After a push: drop its answers, and let a lookup already running finish unkept."""
        for key in [k for k in self._answers if k[0] == owner and k[1] == slug]:
            del self._answers[key]
        for key in [k for k in self._lookups if k[0] == owner and k[1] == slug]:
            del self._lookups[key]

    def forget_all(self) -> None:
        """Drop every answer, and let the lookups already running finish unkept."""
        self._answers.clear()
        self._lookups.clear()

    def _lookup(self, key: Key, lookup: LookupFn[Pack]) -> asyncio.Task[Lookup[Pack]]:
        """The lookup running for this key, or a new one."""
        task = self._lookups.get(key)
        if task is None:
            task = asyncio.ensure_future(self._lookup_and_keep(key, lookup))
            self._lookups[key] = task
            task.add_done_callback(lambda done: self._finished(key, done))
        return task

    async def _lookup_and_keep(self, key: Key, lookup: LookupFn[Pack]) -> Lookup[Pack]:
        found, pack = await lookup()
        still_current = self._lookups.get(key) is asyncio.current_task()
        if found is not None and pack is not None and still_current:
            self._keep(key, found, pack)
        return found, pack

    def _keep(self, key: Key, found: CloneLookup, pack: Pack) -> None:
        self._answers[key] = WarmAnswer(found, pack, time.monotonic())
        self._answers.move_to_end(key)
        while len(self._answers) > self._max:
            self._answers.popitem(last=False)

    def _finished(self, key: Key, task: asyncio.Task[Lookup[Pack]]) -> None:
        if self._lookups.get(key) is task:
            del self._lookups[key]
        if not task.cancelled():
            task.exception()  # retrieved here too, in case every waiter hung up
