"""What the activity classes share: a heartbeat that keeps a long step alive, and the one way a
fact no retry changes becomes a non-retryable `ApplicationError` of a contract error type."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from temporalio import activity
from temporalio.exceptions import ApplicationError

from musehub.contract import (
    BAD_BUILD_ID,
    BLOB_MISSING,
    STAGING_LOST,
    SUPERSEDED,
    ErrorType,
)
from musehub.services.blob_reads import BlobMissing
from musehub.services.staging import BadBuildId, StagingLost
from musehub.services.superseded import Superseded

HEARTBEAT_EVERY_SECONDS = 1.0
# The domain's exceptions that are facts, not faults: retrying the step would fail the same way.
BUSINESS_ERRORS: dict[type[Exception], ErrorType] = {
    BlobMissing: BLOB_MISSING,
    StagingLost: STAGING_LOST,
    BadBuildId: BAD_BUILD_ID,
    Superseded: SUPERSEDED,
}


def business_error(message: str, kind: ErrorType) -> ApplicationError:
    """A fact no retry changes (a blob that does not exist): fail now, not forever."""
    return ApplicationError(message, type=kind, non_retryable=True)


@contextmanager
def business_errors() -> Iterator[None]:
    """Raise the domain exceptions in BUSINESS_ERRORS as business errors of their type."""
    try:
        yield
    except tuple(BUSINESS_ERRORS) as exc:
        raise business_error(str(exc), BUSINESS_ERRORS[type(exc)]) from None


class Heartbeat:
    """Heartbeats every few seconds while a long step runs, with its latest progress: a live
    worker stays alive even inside one slow read, and a dead one is noticed within the
    heartbeat timeout. Use it as `async with Heartbeat() as heartbeat:`; calling it only
    records progress, the beats come from the task the `async with` runs."""

    def __init__(self, interval: float = HEARTBEAT_EVERY_SECONDS) -> None:
        self._interval = interval
        self._progress = {"done": 0, "total": 0}
        self._task: asyncio.Task[None] | None = None

    def __call__(self, done: int, total: int) -> None:
        self._progress = {"done": done, "total": total}

    async def __aenter__(self) -> Heartbeat:
        activity.heartbeat(self._progress)
        self._task = asyncio.create_task(self._beat())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            activity.heartbeat(self._progress)
