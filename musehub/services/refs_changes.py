"""Hear about every change to a repo's refs the moment it commits, in every API process.

An API process keeps a repo's refs (its branch heads, default branch and visibility) for about
a second, so a clone of the head set (`mpack-refs`) costs no database work. A push through this
process forgets them at once; a push through another process, or a branch changed by hand, did
not, and for that second a clone or pull could get the heads from before it: a CI job that a
push started could build the commit before the one it was started for.

Triggers (migration 0007) send `NOTIFY musehub_refs, '<owner>/<slug>'` with every change to a
repo's branches or its row, whatever made it; PostgreSQL delivers it when the transaction
commits. `RefsChanges.run` holds one connection that listens (its own, outside the engine's
pool), and hands each change to `on_change`. A repo's refs may be kept only while it listens:
`on_listening(False)` when the connection is lost (a restart, a failover, a silent network that
the keep-alive finds), `on_listening(True)` once it listens again; the caller looks refs up on
every request meanwhile.
Listening is proven, not assumed: before it says so, and every `KEEPALIVE_S` after, the
connection sends a notification of its own and must hear it come back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

CHANNEL = "musehub_refs"  # the triggers' channel (migrations/versions/0007_refs_notify.py)
KEEPALIVE_S = 10.0  # how often the connection proves it hears the channel; how long that may take
# Connection options of SQLAlchemy's asyncpg dialect that asyncpg.connect does not take.
_SQLALCHEMY_ONLY = (
    "prepared_statement_cache_size",
    "prepared_statement_name_func",
    "async_creator_fn",
)
PROBE_PREFIX = "#probe-"  # no owner name starts with "#" (tokens.USER_NAME_PATTERN)
AFTER_LOSS_S = 0.1  # a connection that listened, then was lost: a failover, likely over
MAX_RETRY_S = 8.0

log = logging.getLogger("musehub.refs")

OnChange = Callable[[str, str], None]  # owner, slug
OnListening = Callable[[bool], None]


class RefsChanges:
    def __init__(
        self,
        engine: AsyncEngine,
        on_change: OnChange,
        on_listening: OnListening,
        *,
        keepalive_s: float = KEEPALIVE_S,
    ) -> None:
        self._engine = engine
        self._on_change = on_change
        self._on_listening = on_listening
        self._keepalive_s = keepalive_s
        self.backend_pid: int | None = None  # the listening connection's, while it listens
        self._probe_name = f"{PROBE_PREFIX}{secrets.token_hex(8)}-"  # every process hears it
        self._probes = 0
        self._probe_sent = ""
        self._probe_heard = asyncio.Event()

    async def run(self) -> None:
        """Listen until cancelled; after a lost connection, listen again (backing off)."""
        failures = 0
        while True:
            try:
                await self._listen()
                failures = 0  # it listened, then lost the connection: try again soon
            except Exception as exc:  # the database down, a refused connection, a lost one
                failures += 1
                if failures == 1:
                    log.warning(
                        "not listening for refs changes (%s); refs are looked up on every "
                        "request until it listens again",
                        exc,
                    )
            delay = min(MAX_RETRY_S, 0.25 * 2**failures) if failures else AFTER_LOSS_S
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))

    async def _listen(self) -> None:
        """One connection's life: returns or raises once it is lost."""
        pg = await self._connect()
        try:
            lost = asyncio.Event()
            pg.add_termination_listener(lambda _: lost.set())
            await pg.add_listener(CHANNEL, self._notified)
            await self._hear_own_probe(pg)
            self.backend_pid = pg.get_server_pid()
            self._on_listening(True)
            try:
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), self._keepalive_s)
                    if not lost.is_set():
                        await self._hear_own_probe(pg)
            finally:
                self.backend_pid = None
                self._on_listening(False)
            log.warning("the refs listener's connection was lost; listening again")
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pg.close(), self._keepalive_s)

    async def _connect(self) -> Any:
        """An asyncpg connection of its own, made from the engine's URL as the engine makes its
        connections, but outside its pool: it is held for the process's life, and requests
        must not wait for the slot it would take."""
        import asyncpg

        _, params = self._engine.dialect.create_connect_args(self._engine.url)
        for pool_only in _SQLALCHEMY_ONLY:
            params.pop(pool_only, None)
        return await asyncpg.connect(**params, timeout=self._keepalive_s)

    async def _hear_own_probe(self, pg: Any) -> None:
        """Send a notification on the channel and hear it, or raise: proof that changes reach
        this connection. A dead connection fails here; so does one through a pooler in
        transaction mode (PgBouncer's default), which takes the LISTEN and delivers nothing."""
        self._probes += 1
        probe = f"{self._probe_name}{self._probes}"
        heard = self._probe_heard = asyncio.Event()
        self._probe_sent = probe
        sent = pg.execute("SELECT pg_notify($1, $2)", CHANNEL, probe)
        await asyncio.wait_for(sent, self._keepalive_s)
        try:
            await asyncio.wait_for(heard.wait(), self._keepalive_s)
        except TimeoutError:
            raise ConnectionError(
                "a notification sent on the refs channel did not come back (is the database "
                "reached through a pooler in transaction mode? LISTEN needs a session)"
            ) from None

    def _notified(self, _connection: object, _pid: int, _channel: str, payload: str) -> None:
        if payload.startswith(PROBE_PREFIX):
            if payload == self._probe_sent:
                self._probe_heard.set()
            return  # another process's probe
        owner, _, slug = payload.partition("/")
        self._on_change(owner, slug)
