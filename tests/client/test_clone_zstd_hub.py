"""`musehub clone` takes the zstd copy from the real API (test PostgreSQL, local storage) and
decodes it while downloading; a copy that is not a whole zstd stream fails the clone cleanly,
never checks out a wrong tree."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import parts_of
from musehub.client.clone import clone
from musehub.client.errors import CloneError
from musehub.client.wire import MPackURL, MuseRemote
from musehub.db.models import MPackEncoding
from musehub.mpack.encoding import encoded_key, raw_key_of
from musehub.synth import SynthRepo, generate_repo, push_synth
from tests.conftest import Hub
from tests.hub_storage import key_of_url


async def pushed(hub: Hub) -> tuple[str, httpx.AsyncBaseTransport, SynthRepo]:
    owner, slug, token = await hub.create_repo()
    url = f"http://hub.test/{owner}/{slug}"
    transport = hub.transport
    repo = generate_repo(30, 8, 20_000, 2, seed=7)
    async with MuseRemote(url, token, transport=transport) as remote:
        await push_synth(remote, repo)
    return url, transport, repo


async def answer(url: str, transport: httpx.AsyncBaseTransport, caps: tuple[str, ...]) -> MPackURL:
    async with MuseRemote(url, transport=transport) as remote:
        refs = await remote.refs()
        found = await remote.fetch(sorted(set(refs.branch_heads.values())), [], caps)
    assert isinstance(found, MPackURL)
    return found


async def test_clone_downloads_the_zstd_copy_and_checks_out_the_same_files(
    hub: Hub, tmp_path: Path
) -> None:
    url, transport, repo = await pushed(hub)
    raw = await answer(url, transport, ("mpack-url",))
    result = await clone(url, tmp_path / "clone", transport=transport, progress=False)
    zstd = await answer(url, transport, ("mpack-url", "mpack-zstd"))
    (copy,) = zstd.parts
    assert copy.encoding == "zstd" and copy.decoded_size == raw.size
    assert result.bytes == zstd.size < raw.size  # the copy is what went over the wire
    assert result.commits == 30 and result.objects == len(repo.object_ids)
    muse = tmp_path / "clone" / ".muse"
    for commit in repo.commits:
        assert json.loads((muse / "commits" / f"{commit['commit_id']}.json").read_text()) == commit
    head = next(c for c in repo.commits if c["commit_id"] == repo.branch_heads["main"])
    for rel, oid in repo.snapshots[head["snapshot_id"]]["manifest"].items():
        assert (tmp_path / "clone" / rel).read_bytes() == repo.load_object(oid)


async def test_a_truncated_copy_fails_the_clone_and_leaves_nothing(
    hub: Hub, tmp_path: Path
) -> None:
    """The hub itself promises a cut-short copy (its size and sha256 match what is served): the
    decoder finds the frame unfinished and the clone leaves no repository behind."""
    url, transport, _ = await pushed(hub)
    zstd = await answer(url, transport, ("mpack-url", "mpack-zstd"))
    key = encoded_key(raw_key_of(key_of_url(hub.settings, zstd.parts[0].url)))
    whole = await hub.storage.get(key)
    cut = whole[: len(whole) // 2]
    await hub.storage.put(key, cut)

    async with AsyncSession(hub.engine) as session:
        await session.execute(
            update(MPackEncoding)
            .where(MPackEncoding.mpack_id == raw_key_of(key))
            .values(size_bytes=len(cut), sha256=hashlib.sha256(cut).hexdigest())
        )
        await session.commit()
    parts_of(hub.app).fetch.forget_repo(*url.rsplit("/", 2)[1:])  # its warm answer is stale
    dest = tmp_path / "clone"
    with pytest.raises(CloneError, match="truncated"):
        await clone(url, dest, transport=transport, progress=False)
    assert not dest.exists()
    assert _left_in(tmp_path) == []


def _left_in(folder: Path) -> list[Path]:
    return list(folder.iterdir())
