"""What a fetch is answered with: one stored pack, or a chain of stored parts, or both, with
presigned URLs; and the answer's wire forms for clients that take URLs. (The inline form, the
pack's bytes in the response, is streamed by the route.)

A client that also sent `mpack-zstd` may be given the zstd copies of the packs instead
(`zstd_answers.with_zstd`): then `mpack_encoding: "zstd"` says the one pack at `mpack_url` is
compressed, a part's `encoding: "zstd"` says that part is, and the size and sha256 beside each
are of the bytes served; `mpack_decoded_size` / `decoded_size` give the raw pack's size, which
a client can hold the decoder to. Without the capability no answer carries these fields."""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

import msgpack

from musehub.services.chains import Chain
from musehub.services.growing_pack import GrowingPackReader

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
    size: int  # of the bytes at `url`
    sha256: str
    encoding: str | None = None  # None: a raw pack
    decoded_size: int | None = None  # of the raw pack, when encoded

    def wire(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"url": self.url, "size": self.size, "sha256": self.sha256}
        if self.encoding is not None:
            fields["encoding"] = self.encoding
            fields["decoded_size"] = self.decoded_size
        return fields


@dataclass(frozen=True)
class FetchAnswer:
    cache: CacheOutcome
    branch_heads: dict[str, str]
    size: int  # bytes of the whole answer as one pack
    expires_at: datetime  # of every URL in it
    pack: FetchMPack | None = None  # the answer as one stored pack, when there is one
    chain: Chain | None = None  # the answer as parts, when it was recorded as a chain
    parts: tuple[PresignedPart, ...] = ()  # the chain's parts, presigned, in order
    # The zstd copies of `pack` and of `parts`, for clients that sent `mpack-zstd`, once made.
    zstd_pack: PresignedPart | None = None
    zstd_parts: tuple[PresignedPart, ...] = ()
    # A pack still being built, for an inline answer that streams it as it is written.
    growing: GrowingPackReader | None = None

    @classmethod
    def of_pack(cls, pack: FetchMPack, heads: dict[str, str]) -> FetchAnswer:
        part = PresignedPart(pack.url, pack.size, pack.sha256)
        return cls(pack.cache, heads, pack.size, pack.expires_at, pack, None, (part,))

    @classmethod
    def while_building(
        cls, growing: GrowingPackReader, heads: dict[str, str], cache: CacheOutcome
    ) -> FetchAnswer:
        """The answer of a build that is still writing its pack (size not known yet); `cache`:
        MISS when the pack will be recorded, UNCACHED when it is for this request alone."""
        return cls(cache, heads, 0, datetime.now(UTC), growing=growing)

    def as_hit(self) -> FetchAnswer:
        """The same answer, for the requests after the one that built it."""
        pack = replace(self.pack, cache="HIT") if self.pack is not None else None
        return replace(self, cache="HIT", pack=pack)

    def raw_packs(self, form: AnswerForm) -> list[tuple[str, int]]:
        """(storage key, size) of the raw packs a URL form names: what `mpack-zstd` compresses."""
        if form == "chain" and self.chain is not None:
            return [(p.mpack_id, p.size) for p in self.chain.parts]
        if self.pack is None:
            raise ValueError("a URL-form answer needs the whole answer as one pack")
        return [(self.pack.mpack_key, self.pack.size)]

    def has_zstd(self, form: AnswerForm) -> bool:
        return bool(self.zstd_parts) if form == "chain" else self.zstd_pack is not None

    def with_zstd(self, form: AnswerForm, copies: list[PresignedPart]) -> FetchAnswer:
        """The answer with the zstd copies of `raw_packs(form)`, in that order."""
        if form == "chain":
            return replace(self, zstd_parts=tuple(copies))
        return replace(self, zstd_pack=copies[0])

    @functools.cached_property
    def url_form(self) -> bytes:
        """The answer to a client that sent `mpack-url`, encoded once: a warm answer is given
        to every request for its want set for a second. Needs `pack`."""
        return self._url_answer(zstd=False)

    @functools.cached_property
    def zstd_url_form(self) -> bytes:
        """`url_form` for a client that also sent `mpack-zstd`: the zstd copy, once made."""
        return self._url_answer(zstd=True)

    @functools.cached_property
    def chain_form(self) -> bytes:
        """The answer to a client that sent `mpack-chain`: the parts to apply in order, plus
        the one-pack fields when the one pack exists (a client may send both capabilities)."""
        return self._chain_answer(zstd=False)

    @functools.cached_property
    def zstd_chain_form(self) -> bytes:
        """`chain_form` for a client that also sent `mpack-zstd`: the parts' zstd copies, once
        made (the one-pack fields stay those of the raw pack)."""
        return self._chain_answer(zstd=True)

    def form_with(self, form: AnswerForm, fields: dict[str, Any], *, zstd: bool) -> bytes:
        """The URL or chain form with `fields` added (a head-set clone's refs), encoded once."""
        answer = self._chain_fields(zstd=zstd) if form == "chain" else self._url_fields(zstd=zstd)
        return msgpack.packb(answer | fields, use_bin_type=True)

    def _url_answer(self, *, zstd: bool) -> bytes:
        return msgpack.packb(self._url_fields(zstd=zstd), use_bin_type=True)

    def _chain_answer(self, *, zstd: bool) -> bytes:
        return msgpack.packb(self._chain_fields(zstd=zstd), use_bin_type=True)

    def _url_fields(self, *, zstd: bool) -> dict[str, Any]:
        if self.pack is None:
            raise ValueError("a URL-form answer needs the whole answer as one pack")
        answer: dict[str, Any] = {
            "mpack_url": self.pack.url,
            "mpack_size": self.pack.size,
            "mpack_sha256": self.pack.sha256,
            "expires_at": self.expires_at.isoformat(),
            "branch_heads": self.branch_heads,
        }
        copy = self.zstd_pack if zstd else None
        if copy is not None:
            answer |= {
                "mpack_url": copy.url,
                "mpack_size": copy.size,
                "mpack_sha256": copy.sha256,
                "mpack_encoding": copy.encoding,
                "mpack_decoded_size": copy.decoded_size,
            }
        return answer

    def _chain_fields(self, *, zstd: bool) -> dict[str, Any]:
        parts = self.zstd_parts if zstd and self.zstd_parts else self.parts
        answer: dict[str, Any] = {
            "mpack_parts": [p.wire() for p in parts],
            "mpack_size": self.size,
            "expires_at": self.expires_at.isoformat(),
            "branch_heads": self.branch_heads,
        }
        if self.pack is not None:
            answer["mpack_url"] = self.pack.url
            answer["mpack_sha256"] = self.pack.sha256
        return answer
