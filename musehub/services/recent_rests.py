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

import time
from collections import OrderedDict

from musehub.services.fetch_answer import FetchAnswer

# (owner, slug, want set, the rest's part keys)
RestKey = tuple[str, str, tuple[str, ...], tuple[str, ...]]


class RecentRests:
    def __init__(self, ttl_seconds: float, max_entries: int = 10_000) -> None:
        self._ttl = ttl_seconds
        self._max = max_entries
        self._answers: OrderedDict[RestKey, tuple[FetchAnswer, float]] = OrderedDict()

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
