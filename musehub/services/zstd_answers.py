"""Answers in zstd for clients that sent `mpack-zstd` (with `mpack-url` or `mpack-chain`).

Only packs a cache row names are compressed (a HIT or a MISS just recorded): their copies are
kept and serve every later clone. A pack built for one request only (UNCACHED) is answered raw,
which the capability allows ("may"), rather than compressed for one download; so is any answer
whose copy cannot be had right now (being made by another request, or failing to be made).

A missing copy is made while the request waits only when that is quick (up to
`COMPRESS_IN_REQUEST_BYTES` of raw packs: the gabriel pack, 40 MB, is 0.1 s of CPU). Bigger ones
are made in the background of this process and the request is answered raw: a 2 GB pack's
first zstd clone must not sit silent behind a proxy's origin timeout while it compresses."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from musehub.mpack.encoding import ZSTD
from musehub.services.encoded_packs import EncodedPack, make_copy, stored_copies
from musehub.services.fetch_answer import AnswerForm, FetchAnswer, PresignedPart
from musehub.storage import ObjectStorage, StorageError

log = logging.getLogger("musehub.zstd")

COMPRESS_IN_REQUEST_BYTES = 128 * 1024 * 1024
# Copies being made in the background, by raw pack key: one at a time per pack and process.
_in_background: dict[str, asyncio.Task[None]] = {}


async def with_zstd(
    answer: FetchAnswer,
    form: AnswerForm,
    *,
    repo_id: str,
    sessions: async_sessionmaker[AsyncSession],
    storage: ObjectStorage,
    work_dir: Path,
    presign_ttl_seconds: int,
    compress_in_request_bytes: int = COMPRESS_IN_REQUEST_BYTES,
) -> FetchAnswer:
    """`answer` with the zstd copies of the packs its `form` names (made now if need be and
    quick), or `answer` as it is when it stays raw."""
    if form == "inline" or answer.cache == "UNCACHED" or answer.has_zstd(form):
        return answer
    raw = answer.raw_packs(form)
    try:
        copies = await stored_copies(sessions, storage, [key for key, _ in raw])
        missing = [(key, size) for key, size in raw if key not in copies]
        if sum(size for _, size in missing) > compress_in_request_bytes:
            for key, _ in missing:
                _make_in_background(sessions, storage, repo_id, key, work_dir)
            return answer
        for key, _ in missing:
            copy = await make_copy(sessions, storage, repo_id, key, work_dir)
            if copy is None:
                return answer
            copies[key] = copy
    except (OSError, StorageError) as exc:
        # A full scratch disk or a storage hiccup costs this client bytes, not its clone.
        log.warning("no zstd copy for repo %s (%s): answered with raw packs", repo_id, exc)
        return answer
    return answer.with_zstd(
        form,
        [await _presigned(storage, copies[key], size, presign_ttl_seconds) for key, size in raw],
    )


async def copies_in_background() -> None:
    """Wait for the copies this process is making in the background (tests, shutdown)."""
    await asyncio.gather(*_in_background.values(), return_exceptions=True)


async def _presigned(
    storage: ObjectStorage, copy: EncodedPack, raw_size: int, ttl_seconds: int
) -> PresignedPart:
    url = await storage.presign_get(copy.key, ttl_seconds)
    return PresignedPart(url, copy.size, copy.sha256, encoding=ZSTD, decoded_size=raw_size)


def _make_in_background(
    sessions: async_sessionmaker[AsyncSession],
    storage: ObjectStorage,
    repo_id: str,
    mpack_id: str,
    work_dir: Path,
) -> None:
    if mpack_id in _in_background:
        return

    async def make() -> None:
        try:
            await make_copy(sessions, storage, repo_id, mpack_id, work_dir)
        except Exception:
            log.exception("the zstd copy of %s failed; a later request tries again", mpack_id)
        finally:
            _in_background.pop(mpack_id, None)

    _in_background[mpack_id] = asyncio.get_running_loop().create_task(make())
