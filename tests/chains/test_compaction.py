"""Compaction (issue 13, item 2): a chain past its bound gets its oldest parts joined into a new
base by a CompactMPackChain run, no blob read; a compaction that dies before its commit leaves
the row naming only parts that are still stored."""

from __future__ import annotations

import asyncio
import time
from functools import partial
from pathlib import Path

import msgpack
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from musehub.db.engine import session_factory
from musehub.mpack.writer import SectionSpan
from musehub.services import mpack_cache
from musehub.services.chains import Chain, ChainPart, parts_to_merge
from musehub.services.compaction import compact_chain
from musehub.services.encoded_packs import stored_copies
from musehub.storage import LatencyInjectingStorage, StorageError
from tests.chains.history import History
from tests.chains.test_chain_e2e import applied, fetch, ids
from tests.conftest import Hub
from tests.prebuild.conftest import PrebuildHub
from tests.wire.helpers import call, decode


async def chain_now(hub: Hub, repo_id: str, want: list[str]) -> Chain | None:
    async with AsyncSession(hub.engine) as session:
        entry = await mpack_cache.lookup(session, repo_id, want)
    return entry.chain if entry is not None else None


async def wait_for(hub: Hub, repo_id: str, want: list[str], parts: int) -> Chain:
    deadline = time.monotonic() + 60
    while True:
        chain = await chain_now(hub, repo_id, want)
        if chain is not None and len(chain.parts) <= parts:
            return chain
        assert time.monotonic() < deadline, f"chain of {want}: {chain}"
        await asyncio.sleep(0.2)


async def push_one_at_a_time(hub: Hub, pushes: int) -> tuple[str, list[str]]:
    owner, slug, token = await hub.create_repo()
    history = History()
    tips = [history.commit([], {"a": b"0" * 50_000})]
    await history.push(hub, owner, slug, token, "main", tips[-1])
    repo_id = decode(await call(hub.client, owner, slug, "refs"))["repo_id"]
    for n in range(1, pushes):
        await wait_for(hub, repo_id, [tips[-1]], 99)  # its chain is recorded: the next appends
        tips.append(history.commit([tips[-1]], {"a": bytes([n]) * 50_000, f"f{n}": b"x"}))
        await history.push(hub, owner, slug, token, "main", tips[-1])
    return repo_id, tips


async def test_a_long_chain_is_compacted_into_a_new_base(small_chains: PrebuildHub) -> None:
    hub = small_chains
    repo_id, tips = await push_one_at_a_time(hub, 4)
    # The fourth push made a 4-part chain (past 3): the two older top-ups are joined into one
    # (the base outweighs them, so it is not rewritten), the last top-up is kept.
    chain = await wait_for(hub, repo_id, [tips[-1]], 3)
    assert [p.want for p in chain.parts] == [(tips[0],), (tips[2],), (tips[3],)]

    owner, slug = await owner_slug(hub, repo_id)
    full = ids(msgpack.unpackb((await fetch(hub, owner, slug, [tips[-1]], [], [])).content))
    assert len(full["commits"]) == 4
    chained = decode(await fetch(hub, owner, slug, [tips[-1]], [], ["mpack-chain"]))
    assert await applied(hub, chained) == full
    pulled = decode(await fetch(hub, owner, slug, [tips[-1]], [tips[-2]], ["mpack-chain"]))
    assert len(pulled["mpack_parts"]) == 1  # the kept top-up still answers a pull


async def owner_slug(hub: Hub, repo_id: str) -> tuple[str, str]:
    from sqlalchemy import text

    async with AsyncSession(hub.engine) as session:
        row = (
            await session.execute(
                text("SELECT owner, slug FROM musehub_repos WHERE repo_id = :r"), {"r": repo_id}
            )
        ).one()
    return row.owner, row.slug


class UploadDies(LatencyInjectingStorage):
    """Storage that dies while taking the joined base (a worker killed mid-compaction)."""

    async def move_file(self, key: str, path: Path) -> None:
        raise StorageError("the worker died here")

    async def aclose(self) -> None:
        pass


async def test_a_compaction_that_dies_leaves_a_whole_chain(small_chains: PrebuildHub) -> None:
    hub = small_chains
    limits = hub.settings.mpack
    limits.chain_compact_parts = 99  # no compaction while the chain grows
    repo_id, tips = await push_one_at_a_time(hub, 4)
    before = await wait_for(hub, repo_id, [tips[-1]], 99)
    assert len(before.parts) == 4
    limits.chain_compact_parts = 3

    dying = UploadDies(hub.storage, read_delay_seconds=0)
    with pytest.raises(StorageError):
        await compact_chain(session_factory(hub.engine), dying, hub.settings, repo_id, [tips[-1]])
    assert await chain_now(hub, repo_id, [tips[-1]]) == before
    for part in before.parts:
        assert await hub.storage.size(part.mpack_id) == part.size

    result = await compact_chain(
        session_factory(hub.engine), hub.storage, hub.settings, repo_id, [tips[-1]]
    )
    assert (result.parts_before, result.parts_after) == (4, 3)
    # The compaction made its new base's zstd copy: the next push's prebuild, which copies the
    # parts of the row it records, does not pay for compressing it.
    after = await chain_now(hub, repo_id, [tips[-1]])
    assert after is not None
    (joined,) = [p.mpack_id for p in after.parts if p not in before.parts]
    copies = await stored_copies(session_factory(hub.engine), hub.storage, [joined])
    assert joined in copies


def sized(*sizes: int) -> Chain:
    span = SectionSpan(1, 0, 1)
    return Chain(
        tuple(
            ChainPart(f"k{n}", size, "s", (f"w{n}",), (span,) * 3) for n, size in enumerate(sizes)
        )
    )


def test_compaction_copies_what_pushes_added_and_rewrites_the_base_rarely() -> None:
    merge = partial(parts_to_merge, compact_parts=4, ratio=1.0, keep=2)
    assert merge(sized(100, 1, 1, 1)) == (0, 0)  # within bounds
    assert merge(sized(100, 1, 1, 1, 1)) == (1, 3)  # too many parts: old top-ups joined alone
    assert merge(sized(10, 30, 1, 1)) == (0, 2)  # an old top-up outweighs the base: rewritten
    assert merge(sized(10, 1, 30, 30)) == (0, 0)  # recent top-ups never count
    assert merge(sized(10, 30)) == (0, 0)  # nothing older than the kept ones


def settle(chain: Chain, **limits: int | float | None) -> tuple[Chain, int]:
    """The chain once compaction finds nothing due, as `compact_chain` leaves it, and the
    bytes its joins wrote."""
    written = 0
    while True:
        start, end = parts_to_merge(chain, **limits)  # type: ignore[arg-type]
        if end <= start:
            return chain, written
        size = sum(p.size for p in chain.parts[start:end])
        written += size
        merged = ChainPart(f"j{written}", size, "s", chain.parts[end - 1].want, ())
        chain = Chain((*chain.parts[:start], merged, *chain.parts[end:]))


def pushed(chain: Chain, size: int) -> Chain:
    span = SectionSpan(1, 0, 1)
    return Chain((*chain.parts, ChainPart(f"p{len(chain.parts)}", size, "s", ("w",), (span,) * 3)))


LIMITS = {"compact_parts": 32, "ratio": 1.0, "keep": 24, "keep_part_bytes": 1 << 20}


def test_an_import_is_levelled_by_its_own_pushes_not_by_the_small_ones_after_it() -> None:
    """Issue 13's measured case: an import in 32 chunks of a 10x repo (the first chunk small,
    then ~18 MB each), then one-commit pushes of 83 KB. Each chunk's compaction copies what
    the chunks added (not the whole history each time), and no one-commit push afterwards
    joins anything but parts of its own size."""
    chain, import_written = Chain(()), 0
    chunks = [300_000] + [18_000_000 + 97_000 * n for n in range(31)]
    for size in chunks:
        chain, written = settle(pushed(chain, size), **LIMITS)
        import_written += written
        assert len(chain.parts) <= 8  # a levelled run: each part outweighs all after it
    history = sum(chunks)
    assert import_written <= 4 * history  # each byte rewritten about once per doubling
    for n in range(200):
        chain, written = settle(pushed(chain, 83_000), **LIMITS)
        if n < 24:  # the recent pushes stay, and nothing big is rewritten for them
            assert written == 0
        assert written < history / 4  # never the whole history for one small push
        assert len(chain.parts) <= 32 + 1
    assert sum(p.size for p in chain.parts) == history + 200 * 83_000


def test_the_last_small_top_ups_stay_for_pulls_whatever_came_before() -> None:
    chain = sized(5_000_000, 4_000_000, 3_000_000, *([10_000] * 30))
    settled, _ = settle(chain, **LIMITS)
    assert [p.mpack_id for p in settled.parts[-24:]] == [f"k{n}" for n in range(9, 33)]
    assert len(settled.parts) < len(chain.parts)
    # A big push ends the kept run: it is levelled with what came before it at once.
    settled, written = settle(pushed(settled, 2_000_000), **LIMITS)
    assert written > 2_000_000 and len(settled.parts) < 5
