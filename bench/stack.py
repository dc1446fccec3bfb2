"""The hub under test: `musehub dev` as a child process, in a temp state folder, on free ports.

Started exactly as a person would start it (the CLI), so the API, the worker, PostgreSQL and
Temporal are the real thing; stopped with SIGINT, which `musehub dev` turns into an orderly
shutdown of its parts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from musehub.devstack.ports import free_port

READY_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 90.0


@dataclass
class Stack:
    state_dir: Path
    api_port: int
    process: subprocess.Popen[bytes]
    env: dict[str, str]
    printed: dict[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return self.printed.get("API", f"http://127.0.0.1:{self.api_port}")

    @property
    def database_url(self) -> str:
        return self.printed["Database"]

    @property
    def api_log(self) -> Path:
        return self.state_dir / "api.log"

    def stop(self) -> None:
        """SIGINT, then wait; only if that hangs, kill the parts we started, by pid."""
        if self.process.poll() is not None:
            return
        try:
            parts = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            parts = []
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for part in parts:
            if part.is_running():
                part.kill()


def start_stack(
    state_dir: Path, log_path: Path, *, settings: dict[str, str] | None = None
) -> Stack:
    """Spawn `musehub dev --state-dir STATE --port P` with its other ports free, and wait until
    it prints its addresses and answers /health. `settings`: more `MUSEHUB_*` variables (the
    benchmark's own environment's are not passed on)."""
    api_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUSEHUB_")}
    env.update(
        MUSEHUB_DEV_POSTGRES_PORT=str(free_port()),
        MUSEHUB_DEV_TEMPORAL_PORT=str(free_port()),
        MUSEHUB_DEV_TEMPORAL_UI_PORT=str(free_port()),
    )
    env.update(settings or {})
    state_dir.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "musehub.cli.main",
        "dev",
        "--state-dir",
        str(state_dir),
        "--port",
        str(api_port),
    ]
    process = subprocess.Popen(
        command,
        env=env,
        cwd=state_dir.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=_default_sigint,
    )
    stack = Stack(state_dir.resolve(), api_port, process, env)
    ready = threading.Event()
    threading.Thread(target=_read_output, args=(stack, log_path, ready), daemon=True).start()
    try:
        _wait_ready(stack, ready)
    except BaseException:
        stack.stop()
        raise
    return stack


def _default_sigint() -> None:
    """A shell's background job ignores SIGINT, and a child inherits that; `musehub dev` must
    not, or `stop()` could not stop it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _read_output(stack: Stack, log_path: Path, ready: threading.Event) -> None:
    assert stack.process.stdout is not None
    with log_path.open("ab") as log:
        for raw in stack.process.stdout:
            log.write(raw)
            log.flush()
            line = raw.decode(errors="replace").rstrip()
            for label in ("API", "Database", "State"):
                if line.startswith(label + " "):
                    stack.printed[label] = line[len(label) :].strip().split(" (")[0]
            if line.startswith("Ready."):
                ready.set()


def _wait_ready(stack: Stack, ready: threading.Event) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if stack.process.poll() is not None:
            raise RuntimeError(
                f"musehub dev exited with {stack.process.returncode}; see {stack.state_dir}/*.log"
            )
        if ready.wait(0.5):
            response = httpx.get(f"{stack.base_url}/health", timeout=5.0)
            if response.status_code == 200:
                return
    raise RuntimeError(f"musehub dev was not ready within {READY_TIMEOUT_S:.0f} s")
