"""`musehub api` and `musehub worker`, started as a deployment starts them: they read the
settings (flags win), serve, and stop gracefully on SIGTERM with exit code 0."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import WorkflowEnvironment

from musehub.devstack.ports import free_port
from musehub.storage import LocalStorage

MUSEHUB = [sys.executable, "-m", "musehub.cli.main"]
SIGNING_KEY = "commands-tests-signing-key"


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUSEHUB_")}
    env.update(MUSEHUB_STATE_DIR=str(tmp_path / "state"), MUSEHUB_SIGNING_KEY=SIGNING_KEY)
    yield env


def wait_for(check: object, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"exited with {process.returncode}:\n{log.read_text()}")
        try:
            if check():  # type: ignore[operator]
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"not ready within {timeout} s:\n{log.read_text()}")


def test_api_serves_and_lets_a_request_in_flight_finish_on_sigterm(
    env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    env["MUSEHUB_API_PORT"] = "1"  # the flag wins over the setting
    log = tmp_path / "api.log"
    api = subprocess.Popen(
        [*MUSEHUB, "api", "--port", str(port), "--workers", "1", "--shutdown-timeout", "10"],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(f"{base}/health/live").status_code == 200, api, log, 60)
        # One process keeps its metrics in memory: no folder, and they are served all the same.
        assert 'musehub_processes{role="api"} 1.0' in httpx.get(f"{base}/metrics").text
        # An upload in flight when SIGTERM comes: half its body now, half after the signal.
        storage = LocalStorage(
            tmp_path / "state" / "blobs", signing_key=SIGNING_KEY.encode(), public_base_url=base
        )
        path = storage.signer.presign("PUT", "inflight/upload", 600).removeprefix(base)
        data = b"z" * 200_000
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            head = f"PUT {path} HTTP/1.1\r\nHost: hub\r\nContent-Length: {len(data)}\r\n\r\n"
            sock.sendall(head.encode() + data[:100_000])
            time.sleep(0.3)
            api.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            assert api.poll() is None, "stopped with a request in flight"
            with pytest.raises(httpx.ConnectError):  # it no longer takes new connections
                httpx.get(f"{base}/health/live")
            sock.sendall(data[100_000:])
            answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer
        assert api.wait(15) == 0
    finally:
        if api.poll() is None:
            api.kill()
            api.wait()
    assert (tmp_path / "state" / "blobs" / "inflight" / "upload").read_bytes() == data
    output = log.read_text()
    assert "Application shutdown complete." in output
    assert "Traceback" not in output


def test_api_refuses_a_bad_setting_in_one_line(env: dict[str, str]) -> None:
    env["MUSEHUB_API_HEADER_TIMEOUT_SECONDS"] = "0"
    result = subprocess.run(
        [*MUSEHUB, "api", "--port", str(free_port())], env=env, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "musehub: bad setting MUSEHUB_API_HEADER_TIMEOUT_SECONDS: Input should be greater than 0"
    ]


def test_worker_help_names_its_options() -> None:
    result = subprocess.run([*MUSEHUB, "worker", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for option in (
        "--task-queue",
        "--prebuild-task-queue",
        "--max-concurrent-activities",
        "--max-concurrent-builds",
        "--metrics-port",
    ):
        assert option in result.stdout


def test_worker_polls_the_queues_it_is_given_and_stops_on_sigterm(
    env: dict[str, str],
    postgres_server_url: str,
    db_engine: AsyncEngine,  # migrated
    temporal_env: WorkflowEnvironment,
    tmp_path: Path,
) -> None:
    metrics = free_port()
    env.update(
        MUSEHUB_DATABASE_URL=postgres_server_url,
        MUSEHUB_TEMPORAL_ADDRESS=temporal_env.client.service_client.config.target_host,
        MUSEHUB_TEMPORAL_SEARCH_ATTRIBUTES="false",
        MUSEHUB_GC_SCHEDULE_ID=f"gc-{metrics}",  # never due in this session:
        MUSEHUB_GC_INTERVAL_MINUTES="100000",
    )
    inherited = tmp_path / "inherited-metrics"  # one process: it keeps its metrics in memory
    inherited.mkdir()
    env["PROMETHEUS_MULTIPROC_DIR"] = str(inherited)
    log = tmp_path / "worker.log"
    worker = subprocess.Popen(
        [
            *MUSEHUB,
            "worker",
            "--task-queue",
            f"general-{metrics}",
            "--prebuild-task-queue",
            f"prebuild-{metrics}",
            "--max-concurrent-builds",
            "2",
            "--metrics-port",
            str(metrics),
        ],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        polling = f"worker polling prebuild-{metrics} and general-{metrics}"
        wait_for(lambda: polling in log.read_text(), worker, log, 60)
        scrape = httpx.get(f"http://127.0.0.1:{metrics}/metrics")
        assert 'musehub_processes{role="worker"} 1.0' in scrape.text
        assert list(inherited.iterdir()) == []
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert "worker stopping" in log.read_text()
