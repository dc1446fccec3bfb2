"""`musehub dev`: every part on its embedded default, in the foreground, stopped by Ctrl-C.

Each part runs as its own process, as in production: PostgreSQL, the Temporal dev server, and
the worker and the API started by the commands a deployment runs, `musehub worker` and
`musehub api`. A part given an external address in settings is used instead of started.
Once the stack is ready, a worker or API process that dies is restarted with backoff
(`supervisor.py`); only Ctrl-C or SIGTERM stops the stack."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from musehub.db import migrate
from musehub.devstack.ports import ensure_port_free
from musehub.devstack.postgres import EmbeddedPostgres
from musehub.devstack.supervisor import SupervisedChild
from musehub.devstack.temporal import TemporalDevServer
from musehub.settings import Settings

POLL_SECONDS = 0.2
# The `musehub` command of this interpreter, whether or not its script is on PATH.
MUSEHUB = [sys.executable, "-m", "musehub.cli.main"]


def say(message: str) -> None:
    print(f"musehub dev: {message}", flush=True)


@dataclass
class DevStack:
    settings: Settings
    children: list[SupervisedChild] = field(default_factory=list)
    temporal: TemporalDevServer | None = None  # the embedded one, when it runs

    def run(self) -> int:
        state_dir = self.settings.state_dir.resolve()
        state_dir.mkdir(parents=True, exist_ok=True)
        ensure_port_free(self.settings.api.host, self.settings.api.port, what="the API (--port)")
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        with ExitStack() as stack:
            try:
                database_url = self._database(stack, state_dir)
                temporal_address, ui_url = self._temporal(stack, state_dir)
                env = self._child_env(state_dir, database_url, temporal_address)
                self._spawn("worker", [*MUSEHUB, "worker"], env, state_dir)
                self._spawn("api", self._api_command(), env, state_dir)
                self._wait_healthy()
                self._print_ready(database_url, temporal_address, ui_url, state_dir)
                return self._supervise()
            except KeyboardInterrupt:
                say("stopping…")
                return 0
            finally:
                # A second Ctrl-C must not cut the stop short and leave parts holding ports.
                for signum in (signal.SIGINT, signal.SIGTERM):
                    signal.signal(signum, signal.SIG_IGN)
                self._stop_children()

    def _database(self, stack: ExitStack, state_dir: Path) -> str:
        url = self.settings.database.url
        if url is None:
            say("starting PostgreSQL (embedded)…")
            server = EmbeddedPostgres(state_dir / "postgres", port=self.settings.dev.postgres_port)
            url = stack.enter_context(server).url
        say("migrating the database to head…")
        asyncio.run(migrate.upgrade_url_to_head(url))
        return url

    def _temporal(self, stack: ExitStack, state_dir: Path) -> tuple[str, str | None]:
        if self.settings.temporal.address is not None:
            return self.settings.temporal.address, None
        say("starting the Temporal dev server…")
        server = TemporalDevServer(
            state_dir / "temporal.db",
            port=self.settings.dev.temporal_port,
            ui_port=self.settings.dev.temporal_ui_port,
        )
        stack.enter_context(server)
        self.temporal = server
        return server.address, server.ui_url

    def _child_env(
        self, state_dir: Path, database_url: str, temporal_address: str
    ) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            MUSEHUB_STATE_DIR=str(state_dir),
            MUSEHUB_DATABASE_URL=database_url,
            MUSEHUB_TEMPORAL_ADDRESS=temporal_address,
            MUSEHUB_API_HOST=self.settings.api.host,
            MUSEHUB_API_PORT=str(self.settings.api.port),
        )
        return env

    def _api_command(self) -> list[str]:
        api = self.settings.api
        return [*MUSEHUB, "api", "--host", api.host, "--port", str(api.port)]

    def _spawn(self, name: str, command: list[str], env: dict[str, str], state_dir: Path) -> None:
        child = SupervisedChild(name, command, env, state_dir / f"{name}.log", say)
        self.children.append(child)
        child.start()

    def _wait_healthy(self, timeout: float = 60.0) -> None:
        url = f"http://{self.settings.api.host}:{self.settings.api.port}/health"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_children()
            try:
                if httpx.get(url, timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the API did not answer {url} with 200 within {timeout:.0f} s")

    def _print_ready(
        self, database_url: str, temporal_address: str, ui_url: str | None, state_dir: Path
    ) -> None:
        lines = [
            f"API            {self.settings.public_base_url}",
            f"Temporal       {temporal_address} (namespace {self.settings.temporal.namespace})",
            f"Temporal UI    {ui_url or 'external cluster: see its own UI'}",
            f"Database       {database_url}",
            f"State          {state_dir} (logs: *.log)",
        ]
        print("\n".join(["", *lines, "", "Ready. Press Ctrl-C to stop."]), flush=True)

    def _supervise(self) -> int:
        """Restart children that die, until Ctrl-C or SIGTERM (a KeyboardInterrupt)."""
        while True:
            for child in self.children:
                child.poll()
            time.sleep(POLL_SECONDS)

    def _check_children(self) -> None:
        """Before the stack is ready a death is a startup failure: stop with its log's name.
        The Temporal dev server first: a worker that cannot reach it exits too, and says less."""
        failure = self.temporal.failure() if self.temporal is not None else None
        if failure is not None:
            raise RuntimeError(failure)
        for child in self.children:
            code = child.exit_code()
            if code is not None:
                raise RuntimeError(
                    f"the {child.name} exited with code {code}; see {child.log_path.resolve()}"
                )

    def _stop_children(self) -> None:
        for child in reversed(self.children):
            child.stop()
        for child in reversed(self.children):
            child.wait_stopped()


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
