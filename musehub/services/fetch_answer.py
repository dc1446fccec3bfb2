"""What a fetch is answered with: one stored pack, or a chain of stored parts, or both, with
presigned URLs; and the answer's wire forms for clients that take URLs. (The inline form, the
pack's bytes in the response, is streamed by the route.)"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

import msgpack

from musehub.services.chains import Chain
from musehub.services.growing_pack import GrowingPack

CacheOutcome = Literal["HIT", "MISS", "UNCACHED"]
# url: `mpack-url` (one URL); chain: `mpack-chain` (the parts, in order); inline: neither.
AnswerForm = Literal["url", "chain", "inline"]


@dataclass(frozen=True)
class FetchMPack:
    """One stored pack that answers the fetch whole."""

    mpack_key: str
    size: int
    sha256: str
    url: str
    expires_at: datetime
    cache: CacheOutcome


@dataclass(frozen=True)
class PresignedPart:
    url: str
    size: int
    sha256: str


@dataclass(frozen=True)
class FetchAnswer:
    cache: CacheOutcome
    branch_heads: dict[str, str]
    size: int  # bytes of the whole answer as one pack
    expires_at: datetime  # of every URL in it
    pack: FetchMPack | None = None  # the answer as one stored pack, when there is one
    chain: Chain | None = None  # the answer as parts, when it was recorded as a chain
    parts: tuple[PresignedPart, ...] = ()  # the chain's parts, presigned, in order
    # A pack still being built, for an inline answer that streams it as it is written.
    growing: GrowingPack | None = None

    @classmethod
    def of_pack(cls, pack: FetchMPack, heads: dict[str, str]) -> FetchAnswer:
        part = PresignedPart(pack.url, pack.size, pack.sha256)
        return cls(pack.cache, heads, pack.size, pack.expires_at, pack, None, (part,))

    @classmethod
    def while_building(cls, growing: GrowingPack, heads: dict[str, str]) -> FetchAnswer:
        """The answer of a build that is still writing its pack (size not known yet)."""
        return cls("MISS", heads, 0, datetime.now(UTC), growing=growing)

    def as_hit(self) -> FetchAnswer:
        """The same answer, for the requests after the one that built it."""
        pack = replace(self.pack, cache="HIT") if self.pack is not None else None
        return replace(self, cache="HIT", pack=pack)

    @functools.cached_property
    def url_form(self) -> bytes:
        """The answer to a client that sent `mpack-url`, encoded once: a warm answer is given
        to every request for its want set for a second. Needs `pack`."""
        if self.pack is None:
            raise ValueError("a URL-form answer needs the whole answer as one pack")
        return msgpack.packb(
            {
                "mpack_url": self.pack.url,
                "mpack_size": self.pack.size,
                "mpack_sha256": self.pack.sha256,
                "expires_at": self.expires_at.isoformat(),
                "branch_heads": self.branch_heads,
            },
            use_bin_type=True,
        )

    @functools.cached_property
    def chain_form(self) -> bytes:
        """The answer to a client that sent `mpack-chain`: the parts to apply in order, plus
        the one-pack fields when the one pack exists (a client may send both capabilities)."""
        answer: dict[str, Any] = {
            "mpack_parts": [{"url": p.url, "size": p.size, "sha256": p.sha256} for p in self.parts],
            "mpack_size": self.size,
            "expires_at": self.expires_at.isoformat(),
            "branch_heads": self.branch_heads,
        }
        if self.pack is not None:
            answer["mpack_url"] = self.pack.url
            answer["mpack_sha256"] = self.pack.sha256
        return msgpack.packb(answer, use_bin_type=True)
