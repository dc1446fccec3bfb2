"""Compaction of a chain: its oldest parts joined into a new base, by byte ranges.

A chain grows by one top-up per push. When the levelled rule (`chains.parts_to_merge`) finds a
part outweighed by the parts after it, or the chain past `MUSEHUB_MPACK_CHAIN_COMPACT_PARTS`,
the prebuild starts CompactMPackChain, which joins those parts into one stored pack (no blob is
read: the parts' records are copied by range), again and again until nothing is due, keeping
the last `…_CHAIN_KEEP_PARTS` small top-ups so pulls from recent pushes still hit.

Crash safety. The new base is uploaded first, then, in one transaction under its object lock,
described as a part and linked in place of the parts it joins, provided the row still begins
with those parts. A crash before that commit leaves the row as it was (naming parts that are all
still stored) and the new base an orphan the sweep collects; after it, the replaced parts are
named by no row (unless another chain shares them) and go with the orphan sweep, after a grace
longer than any URL handed out for them. A row never names a missing part.

The new base's zstd copy is made by the compaction too, once its joins are done: the prebuild
copies the parts of every row it records, so without it the next push would pay for
compressing the whole base (34 MB of copies for a 37 KB push of the gabriel preset)."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from musehub.contract import CompactChainResult
from musehub.services import chains, mpack_cache
from musehub.services.chains import Chain, ChainPart
from musehub.services.encoded_packs import make_copies_for
from musehub.services.mpack_build import join_and_upload
from musehub.settings import Settings
from musehub.storage import ObjectStorage

log = logging.getLogger("musehub.compaction")


def needs_compaction(chain: Chain, settings: Settings) -> bool:
    start, end = _parts_to_merge(chain, settings)
    return end > start


async def compact_chain(
    sessions: async_sessionmaker[AsyncSession],
    storage: ObjectStorage,
    settings: Settings,
    repo_id: str,
    want: list[str],
) -> CompactChainResult:
    """Join parts of `want`'s chain until the levelled rule finds nothing due (at most
    `chain_compact_steps` joins), each join uploaded and relinked on its own: a run that dies
    keeps the joins it committed."""
    first: int | None = None
    result = CompactChainResult()
    for _ in range(settings.mpack.chain_compact_steps):
        step = await _compact_once(sessions, storage, settings, repo_id, want)
        if step is None:
            break
        if first is None:
            first = step.parts_before
        result = CompactChainResult(
            first, step.parts_after, result.joined_bytes + step.joined_bytes
        )
        if not step.joined_bytes:
            break
    if result.joined_bytes:
        await make_copies_for(sessions, storage, repo_id, want, settings.work_dir)
    return result


async def _compact_once(
    sessions: async_sessionmaker[AsyncSession],
    storage: ObjectStorage,
    settings: Settings,
    repo_id: str,
    want: list[str],
) -> CompactChainResult | None:
    """One join; None when the row is gone. `joined_bytes` 0: nothing due, or the row
    changed under the join (the next compaction looks again)."""
    async with sessions() as session:
        entry = await mpack_cache.lookup(session, repo_id, want)
    if entry is None or entry.chain is None:
        return None  # expired or rebuilt meanwhile: nothing to compact
    chain = entry.chain
    start, end = _parts_to_merge(chain, settings)
    if end <= start:
        return CompactChainResult(len(chain.parts), len(chain.parts))
    joined = chain.parts[:end]
    key, digest = await join_and_upload(
        storage, repo_id, [p.stored for p in joined[start:]], settings.work_dir
    )
    merged = ChainPart(key, digest.size, digest.sha256, joined[-1].want, digest.sections)
    async with sessions() as session:
        await mpack_cache.hold_mpack_object(session, key)
        current = await mpack_cache.lookup(session, repo_id, want)
        if (
            current is None
            or current.chain is None
            or current.chain.parts[:end] != joined
            or await storage.size(key) != digest.size
        ):
            return CompactChainResult(len(chain.parts), len(chain.parts))  # changed: next time
        compacted = Chain((*joined[:start], merged, *current.chain.parts[end:]))
        await chains.record_part(session, repo_id, key, digest)
        await chains.copy_held(session, repo_id, key, [p.mpack_id for p in joined[start:]])
        await mpack_cache.replace_links(session, current.cache_id, compacted)
        await session.commit()
    log.info(
        "compacted chain repo=%s want=%s parts=%d->%d joined=[%d,%d) joined_bytes=%d",
        repo_id,
        ",".join(w[:12] for w in want),
        len(current.chain.parts),
        len(compacted.parts),
        start,
        end,
        digest.size,
    )
    return CompactChainResult(len(current.chain.parts), len(compacted.parts), digest.size)


def _parts_to_merge(chain: Chain, settings: Settings) -> tuple[int, int]:
    limits = settings.mpack
    return chains.parts_to_merge(
        chain,
        compact_parts=limits.chain_compact_parts,
        ratio=limits.chain_compact_ratio,
        keep=limits.chain_keep_parts,
        keep_part_bytes=limits.chain_keep_part_bytes,
    )
