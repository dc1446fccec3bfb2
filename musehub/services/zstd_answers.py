"""Answers in zstd for clients that sent `mpack-zstd` (with `mpack-url` or `mpack-chain`).

Only packs a cache row names are compressed (a HIT or a MISS just recorded): their copies are
kept and serve every later clone. A pack built for one request only (UNCACHED) is answered raw,
which the capability allows ("may"), rather than compressed for one download; so is any answer
whose copy cannot be had right now (being made by another request, or failing to be made)."""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from musehub.mpack.encoding import ZSTD
from musehub.services.encoded_packs import zstd_copies
from musehub.services.fetch_answer import AnswerForm, FetchAnswer, PresignedPart
from musehub.storage import ObjectStorage, StorageError

log = logging.getLogger("musehub.zstd")


async def with_zstd(
    answer: FetchAnswer,
    form: AnswerForm,
    *,
    repo_id: str,
    sessions: async_sessionmaker[AsyncSession],
    storage: ObjectStorage,
    work_dir: Path,
    presign_ttl_seconds: int,
) -> FetchAnswer:
    """`answer` with the zstd copies of the packs its `form` names (made now if need be), or
    `answer` as it is when it stays raw."""
    if form == "inline" or answer.cache == "UNCACHED" or answer.has_zstd(form):
        return answer
    raw = answer.raw_packs(form)
    try:
        copies = await zstd_copies(sessions, storage, repo_id, [key for key, _ in raw], work_dir)
    except (OSError, StorageError) as exc:
        # A full scratch disk or a storage hiccup costs this client bytes, not its clone.
        log.warning("no zstd copy for repo %s (%s): answered with raw packs", repo_id, exc)
        return answer
    if copies is None:
        return answer
    presigned = [
        PresignedPart(
            await storage.presign_get(copy.key, presign_ttl_seconds),
            copy.size,
            copy.sha256,
            encoding=ZSTD,
            decoded_size=raw_size,
        )
        for copy, (_, raw_size) in zip(copies, raw, strict=True)
    ]
    return answer.with_zstd(form, presigned)
