"""Connecting to Temporal from settings: the dev server, a self-hosted cluster (TLS) or Temporal
Cloud (API key)."""

from __future__ import annotations

import asyncio
import logging
import time

from temporalio.client import Client

from musehub.settings import Settings

log = logging.getLogger("musehub.temporal")


def temporal_address(settings: Settings) -> str:
    return settings.temporal.address or f"127.0.0.1:{settings.dev.temporal_port}"


async def connect(settings: Settings) -> Client:
    api_key = settings.temporal.api_key
    return await Client.connect(
        temporal_address(settings),
        namespace=settings.temporal.namespace,
        tls=settings.temporal.tls or api_key is not None,
        api_key=api_key.get_secret_value() if api_key else None,
    )


class LazyTemporalClient:
    """The API's handle on Temporal: connects on first use and again after a failure, at most
    once per `retry_after` seconds, so a Temporal outage never blocks or fails a push."""

    def __init__(
        self,
        settings: Settings,
        *,
        client: Client | None = None,
        retry_after: float = 5.0,
        timeout: float = 3.0,
    ) -> None:
        self._settings = settings
        self._retry_after = retry_after
        self._timeout = timeout
        self._client = client
        self._last_failure = -float("inf")
        self._lock = asyncio.Lock()

    @classmethod
    def disabled(cls, settings: Settings) -> LazyTemporalClient:
        """A handle that never connects (for an API run without Temporal, and tests)."""
        return cls(settings, retry_after=float("inf"))

    async def get(self) -> Client | None:
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None and time.monotonic() - self._last_failure > self._retry_after:
                try:
                    self._client = await asyncio.wait_for(connect(self._settings), self._timeout)
                except Exception as exc:  # any failure means "Temporal is unreachable right now"
                    self._last_failure = time.monotonic()
                    log.warning(
                        "Temporal unreachable at %s: %s", temporal_address(self._settings), exc
                    )
        return self._client
