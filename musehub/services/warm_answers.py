"""Recent warm-clone answers, kept in this process for about a second.

A popular repo's clone is the same answer many times a second: the pack is content-addressed
(its key never changes for a want set) and the presigned URL stays valid for minutes. Serving
repeats from memory takes the database off the hottest path entirely. What may be stale, for at
most `ttl`, is the `branch_heads` echo and a visibility change; the muse client sets its refs
from `/refs`, not from this echo, and a push through this process forgets its repo at once."""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

from musehub.services.clone_lookup import CloneLookup
from musehub.services.fetch import FetchMPack


@dataclass(frozen=True)
class WarmAnswer:
    found: CloneLookup
    pack: FetchMPack
    stored_at: float


class WarmAnswers:
    def __init__(self, ttl_seconds: float, max_entries: int = 10_000) -> None:
        self._ttl = ttl_seconds
        self._max = max_entries
        self._answers: OrderedDict[tuple[str, str, tuple[str, ...]], WarmAnswer] = OrderedDict()

    def get(self, owner: str, slug: str, want: list[str]) -> WarmAnswer | None:
        if self._ttl <= 0:
            return None
        key = (owner, slug, tuple(want))
        answer = self._answers.get(key)
        if answer is None:
            return None
        if time.monotonic() - answer.stored_at > self._ttl:
            del self._answers[key]
            return None
        return answer

    def put(
        self, owner: str, slug: str, want: list[str], found: CloneLookup, pack: FetchMPack
    ) -> None:
        if self._ttl <= 0:
            return
        key = (owner, slug, tuple(want))
        self._answers[key] = WarmAnswer(found, pack, time.monotonic())
        self._answers.move_to_end(key)
        while len(self._answers) > self._max:
            self._answers.popitem(last=False)

    def forget_repo(self, owner: str, slug: str) -> None:
        for key in [k for k in self._answers if k[0] == owner and k[1] == slug]:
            del self._answers[key]
