"""Local-only behaviour: the root cannot be escaped, temp files stay hidden, URLs are signed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from musehub.storage import (
    ExpiredSignature,
    InvalidSignature,
    InvalidStorageKey,
    LocalStorage,
    StorageError,
)


@pytest.fixture
def local(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "root", signing_key=b"s" * 32, public_base_url="http://h:1/")


async def test_objects_are_plain_files_under_the_root(local: LocalStorage) -> None:
    await local.put("a/b/c", b"data")

    assert (local.root / "a" / "b" / "c").read_bytes() == b"data"
    assert list(local.temp_dir.iterdir()) == []


async def test_symlink_out_of_the_root_is_refused(local: LocalStorage, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    (local.root / "evil").symlink_to(outside)

    with pytest.raises(InvalidStorageKey):
        await local.get("evil/secret")
    with pytest.raises(InvalidStorageKey):
        await local.put("evil/planted", b"x")
    assert not (outside / "planted").exists()
    assert [info.key async for info in local.list("")] == []
    assert [info.key async for info in local.list("evil/")] == []


async def test_list_skips_temp_and_dot_files(local: LocalStorage) -> None:
    await local.put("k", b"1")
    (local.temp_dir / "put-leftover").write_bytes(b"partial")
    (local.root / ".DS_Store").write_bytes(b"junk")

    assert [info.key async for info in local.list("")] == ["k"]


async def test_key_that_is_also_a_folder_fails_clearly(local: LocalStorage) -> None:
    await local.put("a/b", b"1")

    with pytest.raises(StorageError, match="both an object and a folder"):
        await local.put("a", b"2")
    assert await local.size("a") is None
    assert list(local.temp_dir.iterdir()) == []


async def test_presigned_url_shape(local: LocalStorage) -> None:
    url = await local.presign_get("mpacks/x", ttl_seconds=100)

    assert url.startswith("http://h:1/_storage/mpacks/x?method=GET&expires=")
    assert "&signature=" in url


def test_verify_presigned_tells_tampered_from_expired(local: LocalStorage) -> None:
    future, past = int(time.time()) + 60, int(time.time()) - 60
    good = local.signer.signature("GET", "k", future)
    stale = local.signer.signature("GET", "k", past)

    local.verify_presigned("GET", "k", future, good)
    with pytest.raises(InvalidSignature):
        local.verify_presigned("GET", "k", future, good[:-1] + "x")
    with pytest.raises(InvalidSignature):
        local.verify_presigned("PUT", "k", future, good)
    with pytest.raises(InvalidSignature):
        local.verify_presigned("GET", "k", future, "ü")
    with pytest.raises(ExpiredSignature):
        local.verify_presigned("GET", "k", past, stale)


def test_another_key_cannot_forge_urls(local: LocalStorage, tmp_path: Path) -> None:
    other = LocalStorage(tmp_path / "root", signing_key=b"t" * 32, public_base_url="http://h:1")
    expires = int(time.time()) + 60

    with pytest.raises(InvalidSignature):
        local.verify_presigned("GET", "k", expires, other.signer.signature("GET", "k", expires))
