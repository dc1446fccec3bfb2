"""build_storage picks the backend from Settings; the latency wrapper slows reads only."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from musehub.settings import Settings, SettingsError, StorageSettings
from musehub.storage import LatencyInjectingStorage, LocalStorage, S3Storage, build_storage


def local_settings(tmp_path: Path, **overrides: object) -> Settings:
    return Settings(state_dir=tmp_path / "state", **overrides)  # type: ignore[arg-type]


async def test_local_backend_keeps_one_private_signing_key(tmp_path: Path) -> None:
    first = build_storage(local_settings(tmp_path))
    second = build_storage(local_settings(tmp_path))
    key_file = tmp_path / "state" / "signing.key"

    assert isinstance(first, LocalStorage)
    assert first.root == (tmp_path / "state" / "blobs").resolve()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(bytes.fromhex(key_file.read_text())) == 32
    url = await first.presign_get("k", 60)
    assert url.startswith("http://127.0.0.1:8000/_storage/k?")
    expires, signature = url.split("expires=")[1].split("&signature=")
    assert isinstance(second, LocalStorage)
    second.verify_presigned("GET", "k", int(expires), signature)


def test_configured_signing_key_wins(tmp_path: Path) -> None:
    settings = local_settings(tmp_path, signing_key=SecretStr("a-configured-key-of-32-chars-xxx"))

    storage = build_storage(settings)

    assert isinstance(storage, LocalStorage)
    assert not (tmp_path / "state" / "signing.key").exists()
    expected = LocalStorage(
        tmp_path / "other", signing_key=b"a-configured-key-of-32-chars-xxx", public_base_url="x"
    ).signer.signature("GET", "k", 1)
    assert storage.signer.signature("GET", "k", 1) == expected


def test_short_signing_key_is_a_settings_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="MUSEHUB_SIGNING_KEY"):
        build_storage(local_settings(tmp_path, signing_key=SecretStr("short")))


def test_s3_backend(tmp_path: Path) -> None:
    storage_settings = StorageSettings(
        backend="s3", s3_bucket="packs", s3_endpoint_url="http://127.0.0.1:9"
    )

    storage = build_storage(local_settings(tmp_path, storage=storage_settings))

    assert isinstance(storage, S3Storage)
    assert storage.bucket == "packs"
    assert storage.endpoint_url == "http://127.0.0.1:9"


async def test_latency_wrapper_delays_reads_only(tmp_path: Path) -> None:
    inner = LocalStorage(tmp_path / "root", signing_key=b"k" * 32, public_base_url="http://h")
    slow = LatencyInjectingStorage(inner, read_delay_seconds=0.05)

    started = time.perf_counter()
    await slow.put("k", b"abc")
    write_time = time.perf_counter() - started
    started = time.perf_counter()
    assert await slow.get("k") == b"abc"
    get_time = time.perf_counter() - started
    started = time.perf_counter()
    assert [c async for c in slow.stream("k", start=1)] == [b"bc"]
    stream_time = time.perf_counter() - started

    assert write_time < 0.05
    assert get_time >= 0.05
    assert stream_time >= 0.05
    assert [i.key async for i in slow.list("")] == ["k"]
    assert await slow.size("k") == 3
    await slow.delete("k")
    assert not await slow.exists("k")
