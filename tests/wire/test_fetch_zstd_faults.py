"""When a zstd copy cannot be had, a `mpack-zstd` client gets the raw pack, never an error: the
copy is being made by another request, storage fails while making it, or storage lost it (then
it is made again). `FetchMPacks` runs against the real database and storage; the one fake is a
storage that fails reads."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from musehub.mpack.encoding import encoded_key
from musehub.services.fetch import FetchAnswer, FetchMPacks
from musehub.services.mpack_cache import hold_mpack_object
from musehub.services.zstd_answers import copies_in_background, with_zstd
from musehub.storage import ObjectStorage
from tests.conftest import Hub
from tests.faults import FaultyStorage
from tests.mpack.helpers import VECTOR_HEADS
from tests.wire.helpers import push_vector

MAIN = VECTOR_HEADS["main"]


async def pushed(hub: Hub) -> tuple[str, str]:
    owner, slug, _, _ = await push_vector(hub, branches=("main",))
    return owner, slug


async def answer(
    hub: Hub, owner: str, slug: str, storage: ObjectStorage | None = None
) -> FetchAnswer:
    """A fresh answer (a new FetchMPacks: no warm answers) for a zstd URL client."""
    fetch = FetchMPacks(hub.engine, storage or hub.storage, hub.settings)
    return await fetch.answer(owner, slug, [MAIN], [], None, form="url", zstd=True)


async def test_a_copy_being_made_elsewhere_means_a_raw_answer_now(hub: Hub) -> None:
    owner, slug = await pushed(hub)
    first = await answer(hub, owner, slug)  # built and recorded, its copy made
    assert first.pack is not None and first.zstd_pack is not None
    raw_key = first.pack.mpack_key
    await hub.storage.delete(encoded_key(raw_key))  # so the next answer must make it again
    async with AsyncSession(hub.engine) as holder:
        await hold_mpack_object(holder, raw_key)  # another request is compressing it
        busy = await answer(hub, owner, slug)
        await holder.rollback()
    assert busy.pack is not None and busy.pack.mpack_key == raw_key
    assert busy.zstd_pack is None and b"mpack_encoding" not in busy.zstd_url_form
    again = await answer(hub, owner, slug)  # lost copy: made again once the lock is free
    assert again.zstd_pack is not None
    assert await hub.storage.size(encoded_key(raw_key)) == again.zstd_pack.size


async def test_storage_failing_while_making_a_copy_means_a_raw_answer(hub: Hub) -> None:
    owner, slug = await pushed(hub)
    built = await answer(hub, owner, slug)
    assert built.pack is not None
    await hub.storage.delete(encoded_key(built.pack.mpack_key))
    faulty = FaultyStorage(hub.storage, fail_reads=1)
    raw = await answer(hub, owner, slug, faulty)
    assert faulty.reads == 1  # the compression's read of the raw pack, which failed
    assert raw.cache == "HIT" and raw.zstd_pack is None
    assert raw.pack is not None and raw.pack.sha256 == built.pack.sha256


async def test_a_big_pack_is_answered_raw_while_its_copy_is_made_in_the_background(
    hub: Hub,
) -> None:
    """Past `compress_in_request_bytes` the request does not wait for the compression."""
    owner, slug = await pushed(hub)
    built = await answer(hub, owner, slug)
    assert built.pack is not None
    raw_key, raw_size = built.pack.mpack_key, built.pack.size
    await hub.storage.delete(encoded_key(raw_key))
    plain = await FetchMPacks(hub.engine, hub.storage, hub.settings).answer(
        owner, slug, [MAIN], [], None, form="url"
    )
    sessions = async_sessionmaker(hub.engine, expire_on_commit=False)

    async def zstd_of(plain: FetchAnswer) -> FetchAnswer:
        return await with_zstd(
            plain,
            "url",
            repo_id=raw_key.split("/")[1],
            sessions=sessions,
            storage=hub.storage,
            work_dir=hub.settings.work_dir,
            presign_ttl_seconds=60,
            compress_in_request_bytes=raw_size - 1,
        )

    now = await zstd_of(plain)
    assert now.zstd_pack is None  # answered raw at once
    await copies_in_background()
    later = await zstd_of(plain)
    assert later.zstd_pack is not None and later.zstd_pack.decoded_size == built.pack.size
    assert await hub.storage.size(encoded_key(raw_key)) == later.zstd_pack.size
