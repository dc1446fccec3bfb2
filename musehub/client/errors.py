"""Errors the muse client raises; each message tells a person what to do next."""

from __future__ import annotations


class RemoteError(Exception):
    """The remote answered with a non-2xx status, a redirect, or bytes we cannot read.

    ``status`` is the HTTP status, or 0 when no HTTP answer arrived at all.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status
        self.message = message


class PushRejected(Exception):
    """The remote refused a push (``ok: false`` or HTTP 409)."""


class CloneError(Exception):
    """A clone could not complete; the destination was left as it was found."""


class DownloadError(CloneError):
    """A downloaded pack did not match the size or sha256 the remote promised."""


class PullError(Exception):
    """A pull could not complete; refs and the working tree were left as they were."""
