"""A pack's zstd copy lives and goes with its raw pack: the orphan sweep keeps a copy while its
raw pack is named, and deleting the raw pack deletes the copy and its row."""

from __future__ import annotations

import hashlib
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from musehub.db.models import MPackEncoding
from musehub.mpack.encoding import encoded_key
from musehub.mpack.zstd_module import zstd_module
from musehub.services import gc
from musehub.services.encoded_packs import make_copy
from tests.conftest import Hub
from tests.gc.helpers import (
    DAY,
    age,
    cache_row,
    collect_expired,
    new_repo_id,
    put_pack,
    set_expiry,
)
from tests.storage.s3_server import MotoS3

GRACE = DAY


async def copy_row(hub: Hub, raw_key: str) -> MPackEncoding | None:
    async with AsyncSession(hub.engine) as session:
        found: MPackEncoding | None = await session.scalar(
            select(MPackEncoding).where(MPackEncoding.mpack_id == raw_key)
        )
        return found


async def made_copy(hub: Hub, repo_id: str, raw_key: str, work_dir: Path) -> str:
    sessions = async_sessionmaker(hub.engine, expire_on_commit=False)
    copy = await make_copy(sessions, hub.storage, repo_id, raw_key, work_dir)
    assert copy is not None and copy.key == encoded_key(raw_key)
    assert await hub.storage.size(copy.key) == copy.size
    return copy.key


async def test_a_copy_stays_while_its_pack_is_named_and_goes_with_it(
    hub: Hub, tmp_path: Path
) -> None:
    repo_id = await new_repo_id(hub)
    raw_key = await put_pack(hub.storage, repo_id, b"a pack that compresses " * 1000)
    cache_id = await cache_row(hub, repo_id, raw_key)
    copy_key = await made_copy(hub, repo_id, raw_key, tmp_path)
    assert await copy_row(hub, raw_key) is not None

    age(hub.storage, copy_key, 2 * GRACE)
    async with AsyncSession(hub.engine) as session:
        await gc.sweep_orphan_mpacks(session, hub.storage, grace=GRACE)
    assert await hub.storage.exists(copy_key)  # its raw pack is named: not an orphan

    await set_expiry(hub, cache_id, -DAY)
    _, deleted = await collect_expired(hub, hub.storage)
    assert raw_key in deleted
    assert not await hub.storage.exists(raw_key)
    assert not await hub.storage.exists(copy_key)
    assert await copy_row(hub, raw_key) is None


async def test_an_orphaned_copy_goes_after_the_grace_period(hub: Hub, tmp_path: Path) -> None:
    repo_id = await new_repo_id(hub)
    raw_key = await put_pack(hub.storage, repo_id, b"served once, then forgotten " * 1000)
    copy_key = await made_copy(hub, repo_id, raw_key, tmp_path)
    age(hub.storage, copy_key, 2 * GRACE)
    async with AsyncSession(hub.engine) as session:
        await gc.sweep_orphan_mpacks(session, hub.storage, grace=GRACE)
    assert not await hub.storage.exists(copy_key)
    assert await copy_row(hub, raw_key) is None
    assert await hub.storage.exists(raw_key)  # young: its own grace period still runs


async def test_on_s3_a_copy_is_made_streamed_and_collected_with_its_pack(
    hub: Hub, moto_s3: MotoS3, tmp_path: Path
) -> None:
    content = b"a pack on S3 " * 200_000  # 2.6 MB: several chunks through the compressor
    async with moto_s3.storage(moto_s3.create_bucket()) as s3:
        repo_id = await new_repo_id(hub)
        raw_key = await put_pack(s3, repo_id, content)
        cache_id = await cache_row(hub, repo_id, raw_key, storage=s3)
        sessions = async_sessionmaker(hub.engine, expire_on_commit=False)
        copy = await make_copy(sessions, s3, repo_id, raw_key, tmp_path)
        assert copy is not None
        stored = await s3.get(copy.key)
        assert len(stored) == copy.size < len(content) // 100
        assert hashlib.sha256(stored).hexdigest() == copy.sha256
        assert zstd_module().decompress(stored) == content

        await set_expiry(hub, cache_id, -DAY)
        _, deleted = await collect_expired(hub, s3)
        assert raw_key in deleted
        assert not await s3.exists(raw_key) and not await s3.exists(copy.key)
        assert await copy_row(hub, raw_key) is None


async def test_verify_drops_the_row_of_a_copy_storage_lost_and_keeps_a_whole_one(
    hub: Hub, tmp_path: Path
) -> None:
    """GC's verify step checks the copies of the packs it keeps: a copy whose object vanished
    loses its row (the copy is made again, never promised), a whole one keeps it."""
    repo_id = await new_repo_id(hub)
    lost_raw = await put_pack(hub.storage, repo_id, b"its copy will vanish " * 1000)
    kept_raw = await put_pack(hub.storage, repo_id, b"its copy stays whole " * 1000)
    for raw in (lost_raw, kept_raw):
        await cache_row(hub, repo_id, raw)
        await made_copy(hub, repo_id, raw, tmp_path)
    await hub.storage.delete(encoded_key(lost_raw))

    async with AsyncSession(hub.engine) as session:
        outcome = await gc.verify_live_packs(
            session, hub.storage, max_packs=2, start=min(lost_raw, kept_raw)
        )
    assert outcome.checked == 2 and outcome.lost == 0 and outcome.copies_lost == 1
    assert await copy_row(hub, lost_raw) is None
    assert await copy_row(hub, kept_raw) is not None
    assert await hub.storage.exists(lost_raw)  # the raw pack and its row stay
