"""Hosts for the multi-host test: each runs the real `musehub api` and `musehub worker` commands
in processes of their own, with a state folder (and so a staging folder) no other host sees.
What they share is what production hosts share: the database, Temporal and the bucket."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from musehub.devstack.ports import free_port
from musehub.services.staging import LOCK_FILE, PACK_FILE

# The console script pip installed beside this interpreter: what a deployment runs.
MUSEHUB = str(Path(sys.executable).parent / "musehub")
# Four processes importing at once on a busy 2-core machine take their time.
STARTUP_SECONDS = 120
STOP_SECONDS = 30


@dataclass
class Host:
    name: str
    state_dir: Path
    environment: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    api_url: str = ""
    # Where each part's log was when it last started: a restarted part's "ready" line is new.
    log_starts: dict[str, int] = field(default_factory=dict)

    @property
    def staging_root(self) -> Path:
        return self.state_dir / "tmp" / "prebuild"

    def log(self, part: str) -> Path:
        return self.state_dir / f"{part}.log"

    def start_api(self) -> None:
        port = free_port()
        self.api_url = f"http://127.0.0.1:{port}"
        environment = self.environment | {"MUSEHUB_API_PUBLIC_BASE_URL": self.api_url}
        command = ["api", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
        self._start("api", command, environment)

    def start_worker(self) -> None:
        self._start("worker", ["worker"], self.environment)

    def wait_until_serving(self) -> None:
        """The API ready (database, storage, Temporal) and the worker polling."""
        deadline = time.monotonic() + STARTUP_SECONDS
        while not self._api_ready() or b"worker polling" not in self._log_since_start("worker"):
            for part, process in self.processes.items():
                if process.poll() is not None:
                    raise AssertionError(f"{self.name}'s {part} exited: {self.tail(part)}")
            if time.monotonic() > deadline:
                logs = "\n".join(f"{part}: {self.tail(part)}" for part in self.processes)
                raise AssertionError(f"{self.name} did not start in time:\n{logs}")
            time.sleep(0.1)

    def build_folders(self) -> set[Path]:
        """The folders of builds staged on this host, by any of its workers, dead or alive."""
        return {p for p in self.staging_root.glob("worker-*/*") if p.name != LOCK_FILE}

    def assembling(self) -> bool:
        """A build on this host is writing its pack right now."""
        return any((build / f"{PACK_FILE}.partial").exists() for build in self.build_folders())

    def kill(self, part: str) -> None:
        process = self.processes.pop(part)
        process.send_signal(signal.SIGKILL)
        process.wait(STOP_SECONDS)

    def stop(self) -> None:
        """SIGTERM, as an orchestrator stops a part; SIGKILL only if that did not end it."""
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()

    def tail(self, part: str) -> str:
        path = self.log(part)
        return path.read_text(errors="replace")[-3000:] if path.exists() else "(no log)"

    def _start(self, part: str, command: list[str], environment: dict[str, str]) -> None:
        assert part not in self.processes, f"{self.name}'s {part} is running already"
        with self.log(part).open("ab") as log:
            self.log_starts[part] = log.tell()
            self.processes[part] = subprocess.Popen(
                [MUSEHUB, *command], env=environment, stdout=log, stderr=subprocess.STDOUT
            )

    def _log_since_start(self, part: str) -> bytes:
        with self.log(part).open("rb") as log:
            log.seek(self.log_starts.get(part, 0))
            return log.read()

    def _api_ready(self) -> bool:
        if not self.api_url:
            return True
        try:
            return httpx.get(f"{self.api_url}/health/ready", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False
