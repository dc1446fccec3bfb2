"""Errors a client can act on. The HTTP layer turns each into its status and a one-line text body
(the muse client prints the first 400 characters of a non-2xx body)."""

from __future__ import annotations


class WireError(Exception):
    status = 400

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class BadRequest(WireError):
    status = 400


class Unauthorized(WireError):
    status = 401


class Forbidden(WireError):
    status = 403


class NotFound(WireError):
    status = 404


class Conflict(WireError):
    status = 409


class PayloadTooLarge(WireError):
    status = 413


class Unavailable(WireError):
    """Busy or briefly down: the client should try again after `retry_after` seconds."""

    status = 503

    def __init__(self, message: str, *, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after
