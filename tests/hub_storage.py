"""The storage backends every end-to-end test runs on: the local folder and S3 (moto's server,
with a read latency like R2's). `MUSEHUB_TEST_STORAGE=local|s3|both` (default both) chooses.

Also what makes one hub's storage reachable from elsewhere: the environment a subprocess (a
worker, the CLI) needs to use the same storage, and a transport that sends the hub's own URLs
to the app in this process and anything else (presigned S3 URLs) over the network."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote, urlsplit

import httpx
import pytest
from pydantic import SecretStr

from musehub.settings import Settings, StorageSettings
from musehub.storage import LatencyInjectingStorage, LocalStorage, ObjectStorage, S3Storage
from musehub.storage.signing import STORAGE_URL_PREFIX
from tests.storage.s3_server import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, MotoS3

TEST_STORAGE_VARIABLE = "MUSEHUB_TEST_STORAGE"
BACKENDS = ("local", "s3")
# Small enough that the suite stays quick, large enough that every read on S3 waits for the
# network like it does on R2; the benchmarks use R2's real 50 ms and more.
S3_READ_DELAY_MS = 10
# Where the in-process test hubs answer (their public base URL).
HUB_URL = "http://hub.test"


def backends_under_test() -> list[str]:
    chosen = os.environ.get(TEST_STORAGE_VARIABLE, "both").strip().lower()
    if chosen == "both":
        return list(BACKENDS)
    if chosen in BACKENDS:
        return [chosen]
    raise pytest.UsageError(f"{TEST_STORAGE_VARIABLE} must be local, s3 or both, not {chosen!r}")


def s3_storage_settings(moto: MotoS3, bucket: str) -> StorageSettings:
    return StorageSettings(
        backend="s3",
        s3_endpoint_url=moto.endpoint_url,
        s3_bucket=bucket,
        s3_region=REGION,
        s3_access_key_id=ACCESS_KEY_ID,
        s3_secret_access_key=SecretStr(SECRET_ACCESS_KEY),
        read_delay_ms=S3_READ_DELAY_MS,
    )


def storage_environment(settings: Settings) -> dict[str, str]:
    """The variables a `musehub` subprocess needs to use the storage `settings` describe."""
    group = settings.storage
    environment = {
        "MUSEHUB_STATE_DIR": str(settings.state_dir),
        "MUSEHUB_STORAGE_BACKEND": group.backend,
        "MUSEHUB_STORAGE_READ_DELAY_MS": str(group.read_delay_ms),
        "MUSEHUB_STORAGE_READ_CONCURRENCY": str(group.read_concurrency),
    }
    if settings.signing_key is not None:
        environment["MUSEHUB_SIGNING_KEY"] = settings.signing_key.get_secret_value()
    if group.local_root is not None:
        environment["MUSEHUB_STORAGE_LOCAL_ROOT"] = str(group.local_root)
    if group.backend == "s3":
        assert group.s3_bucket and group.s3_endpoint_url and group.s3_secret_access_key
        environment |= {
            "MUSEHUB_STORAGE_S3_ENDPOINT_URL": group.s3_endpoint_url,
            "MUSEHUB_STORAGE_S3_BUCKET": group.s3_bucket,
            "MUSEHUB_STORAGE_S3_REGION": group.s3_region,
            "MUSEHUB_STORAGE_S3_ACCESS_KEY_ID": group.s3_access_key_id or "",
            "MUSEHUB_STORAGE_S3_SECRET_ACCESS_KEY": group.s3_secret_access_key.get_secret_value(),
        }
    return environment


class HubTransport(httpx.AsyncBaseTransport):
    """Requests to `hub_host` go to the app in this process; the rest (presigned S3 URLs) go
    over the network, as a client's would."""

    def __init__(self, app: object, hub_host: str = urlsplit(HUB_URL).hostname or "") -> None:
        self.hub_host = hub_host
        self._app = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        self._network = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        transport = self._app if request.url.host == self.hub_host else self._network
        return await transport.handle_async_request(request)

    async def aclose(self) -> None:
        await self._network.aclose()
        await self._app.aclose()


def key_of_url(hub_settings: Settings, url: str) -> str:
    """The storage key a presigned URL of either backend points at."""
    path = unquote(urlsplit(url).path)
    if hub_settings.storage.backend == "s3":
        return path.split(f"/{hub_settings.storage.s3_bucket}/", 1)[1]
    return path.split(STORAGE_URL_PREFIX, 1)[1]


def age(storage: ObjectStorage, key: str, by: timedelta) -> None:
    """Make the object look last written `by` ago, on either backend."""
    while isinstance(storage, LatencyInjectingStorage):
        storage = storage.inner
    if isinstance(storage, LocalStorage):
        stamp = (datetime.now(UTC) - by).timestamp()
        os.utime(storage.root.joinpath(*key.split("/")), (stamp, stamp))
        return
    assert isinstance(storage, S3Storage), storage
    age_in_moto(storage.bucket, key, by)


def age_in_moto(bucket: str, key: str, by: timedelta) -> None:
    """The same for an object in moto's server, which runs in this process (s3_server.py)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    stored = s3_backends[DEFAULT_ACCOUNT_ID]["aws"].buckets[bucket].keys.get(key)
    if stored is None:
        raise KeyError(f"no object {key!r} in moto's bucket {bucket!r}")
    stored.last_modified = (datetime.now(UTC) - by).replace(tzinfo=None)  # moto's are naive UTC
