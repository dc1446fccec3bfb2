"""Object storage for blobs and mpacks: one async interface, a local and an S3 backend."""

from musehub.storage.base import (
    InvalidStorageKey,
    ObjectNotFound,
    ObjectStorage,
    StorageError,
    StoredObjectInfo,
    UnfinishedUpload,
    validate_key,
    validate_prefix,
)
from musehub.storage.factory import build_storage
from musehub.storage.latency import LatencyInjectingStorage
from musehub.storage.local import LocalStorage
from musehub.storage.s3 import S3Storage
from musehub.storage.signing import ExpiredSignature, InvalidSignature, PresignedUrlError

__all__ = [
    "ExpiredSignature",
    "InvalidSignature",
    "InvalidStorageKey",
    "LatencyInjectingStorage",
    "LocalStorage",
    "ObjectNotFound",
    "ObjectStorage",
    "PresignedUrlError",
    "S3Storage",
    "StorageError",
    "StoredObjectInfo",
    "UnfinishedUpload",
    "build_storage",
    "validate_key",
    "validate_prefix",
]
