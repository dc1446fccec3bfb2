"""HMAC-signed, expiring URLs for the local backend, and the key file that signs them."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import time
from pathlib import Path
from urllib.parse import quote

from musehub.storage.base import StorageError, validate_key

SIGNED_METHODS = ("GET", "PUT")
STORAGE_URL_PREFIX = "/_storage/"
# Unix seconds as this server writes them: ASCII digits (str.isdigit() also takes "²", which
# int() refuses) and short enough to convert (int() refuses over 4,300 digits); year 33658.
_EXPIRES = re.compile(r"[0-9]{1,12}")


class PresignedUrlError(StorageError):
    """A presigned URL was refused."""


class InvalidSignature(PresignedUrlError):
    """The URL was not signed by this server or was altered after signing."""


class ExpiredSignature(PresignedUrlError):
    """The URL was genuine but its expiry time has passed."""


class UrlSigner:
    """Signs `method\\nkey\\nexpires` with HMAC-SHA256 and checks it back."""

    def __init__(self, signing_key: bytes, public_base_url: str) -> None:
        if len(signing_key) < 16:
            raise ValueError("signing key must be at least 16 bytes")
        self._key = signing_key
        self.public_base_url = public_base_url.rstrip("/")

    def signature(self, method: str, key: str, expires: int) -> str:
        message = f"{method}\n{key}\n{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def url(self, method: str, key: str, expires: int) -> str:
        """The URL for `method` on `key`, valid until unix time `expires`."""
        if method not in SIGNED_METHODS:
            raise ValueError(f"can only sign {SIGNED_METHODS}, not {method!r}")
        validate_key(key)
        signature = self.signature(method, key, expires)
        return (
            f"{self.public_base_url}{STORAGE_URL_PREFIX}{quote(key, safe='/')}"
            f"?method={method}&expires={expires}&signature={signature}"
        )

    def presign(self, method: str, key: str, ttl_seconds: int) -> str:
        if ttl_seconds <= 0:
            raise ValueError(f"ttl_seconds must be positive, got {ttl_seconds}")
        return self.url(method, key, int(time.time()) + ttl_seconds)

    def verify(self, method: str, key: str, expires: int, signature: str) -> None:
        """Raise InvalidSignature if tampered, ExpiredSignature if genuine but too old."""
        validate_key(key)
        expected = self.signature(method, key, expires)
        # Compare as bytes: compare_digest on str rejects non-ASCII input with a TypeError.
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            raise InvalidSignature("this storage link is invalid: its signature does not match")
        if time.time() > expires:
            raise ExpiredSignature("this link has expired; ask the server for a new one")


def parse_expires(text: str) -> int:
    """The `expires` of a presigned URL; InvalidSignature for anything this server never signs."""
    if not _EXPIRES.fullmatch(text):
        raise InvalidSignature("this storage link is invalid: its expiry is not a unix time")
    return int(text)


def load_or_create_signing_key(path: Path) -> bytes:
    """The 32-byte key stored (hex) at `path`, created with mode 0600 on first use."""
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            # link() refuses to overwrite, so two processes starting together agree on one key.
            os.link(tmp, path)
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    text = path.read_text().strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise StorageError(
            f"{path} does not hold a hex signing key; delete it to have a new one made"
        ) from None
    if len(key) < 16:
        raise StorageError(f"{path} holds a key under 16 bytes; delete it to have a new one made")
    return key
