"""Build the configured storage backend from Settings."""

from __future__ import annotations

from musehub.settings import Settings, SettingsError
from musehub.storage.base import ObjectStorage
from musehub.storage.latency import LatencyInjectingStorage
from musehub.storage.local import LocalStorage
from musehub.storage.s3 import S3Storage
from musehub.storage.signing import load_or_create_signing_key

SIGNING_KEY_FILE = "signing.key"


def build_storage(settings: Settings) -> ObjectStorage:
    """The backend `settings.storage.backend` names; the caller closes it (`aclose`)."""
    backend = _backend(settings)
    delay = settings.storage.read_delay_ms
    return LatencyInjectingStorage(backend, delay / 1000) if delay else backend


def _backend(settings: Settings) -> ObjectStorage:
    group = settings.storage
    if group.backend == "s3":
        if not group.s3_bucket:  # Settings validation already demands it; keeps mypy honest
            raise SettingsError("musehub: bad setting MUSEHUB_STORAGE_S3_BUCKET: must be set")
        secret = group.s3_secret_access_key
        return S3Storage(
            group.s3_bucket,
            endpoint_url=group.s3_endpoint_url,
            region=group.s3_region,
            access_key_id=group.s3_access_key_id,
            secret_access_key=secret.get_secret_value() if secret is not None else None,
            max_pool_connections=group.read_concurrency,
        )
    return LocalStorage(
        settings.blobs_root,
        signing_key=signing_key(settings),
        public_base_url=settings.public_base_url,
    )


def signing_key(settings: Settings) -> bytes:
    """`MUSEHUB_SIGNING_KEY`, else a random key kept in `<state_dir>/signing.key` (mode 0600)."""
    if settings.signing_key is not None:
        key = settings.signing_key.get_secret_value().encode()
        if len(key) < 16:
            raise SettingsError(
                "musehub: bad setting MUSEHUB_SIGNING_KEY: use at least 16 characters "
                "(or unset it to have a random key kept in the state folder)"
            )
        return key
    return load_or_create_signing_key(settings.state_dir / SIGNING_KEY_FILE)
