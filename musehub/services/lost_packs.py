"""Packs storage lost: a cache row promises a pack object, and storage can lose it (an
operator's delete, a bucket lifecycle rule, a restore from an older backup). Whoever is about to
rely on a row asks `still_stored` first: a clone's lookup (`fetch.FetchMPacks`), the prebuild's
cache check (`activities.prebuild`) and GC's verify step (`gc.verify_live_packs`). A row whose
object is gone, or is not the size the row says, is dropped with every row naming that object,
counted in `musehub_mpack_lost_total` and logged, and the caller builds the pack again instead
of promising it.

The drop is decided under the object's lock (`mpack_cache.hold_mpack_object`), where the object
is looked at again: a writer holds that lock from its upload until its row is committed, so a
pack uploaded again while we looked is never dropped. Dropping rows deletes no object, so GC's
deletion-order argument (`musehub.services.gc`) holds: this only removes rows that already name
a missing object."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession

from musehub.metrics import LOST_PACKS
from musehub.services import mpack_cache
from musehub.storage import ObjectStorage

log = logging.getLogger("musehub.lost_packs")


async def still_stored(
    session: AsyncSession, storage: ObjectStorage, *, repo_id: str, mpack_id: str, size_bytes: int
) -> bool:
    """Whether storage holds the pack object `mpack_id` with `size_bytes`; when it does not,
    the rows naming it are deleted (the caller commits, which also releases the object's lock).
    One storage call when the pack is there."""
    if await storage.size(mpack_id) == size_bytes:
        return True
    await mpack_cache.hold_mpack_object(session, mpack_id)
    if await storage.size(mpack_id) == size_bytes:
        return True  # uploaded again while we looked
    dropped = await mpack_cache.drop_lost_pack(session, repo_id, mpack_id)
    LOST_PACKS.inc(dropped)
    log.warning(
        "pack %s is gone from storage (or not whole); dropped %d cache row(s) naming it, "
        "it is built again",
        mpack_id,
        dropped,
    )
    return False
