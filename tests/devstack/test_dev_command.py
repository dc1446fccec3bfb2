"""`musehub dev` end to end: every part starts, answers, survives a restart with its state, and
stops cleanly on Ctrl-C, and killed outright takes its parts with it; a busy port and a bad
setting are one clear line each."""

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
import msgpack
import psutil
import pytest

from musehub.devstack.ports import free_port
from tests.devstack.test_supervision import assert_groups_gone, kill_children_and_see_them_back

MUSEHUB = [sys.executable, "-m", "musehub.cli.main"]
PARTS_GONE_WITHIN_S = 30.0


@pytest.fixture
def dev_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = dict(os.environ)
    for name in [k for k in env if k.startswith("MUSEHUB_")]:
        del env[name]
    env.update(
        MUSEHUB_DEV_POSTGRES_PORT=str(free_port()),
        MUSEHUB_DEV_TEMPORAL_PORT=str(free_port()),
        MUSEHUB_DEV_TEMPORAL_UI_PORT=str(free_port()),
        MUSEHUB_API_PORT=str(free_port()),
        MUSEHUB_STATE_DIR=str(tmp_path / "state"),
    )
    yield env


def start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*MUSEHUB, "dev"], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=log.parent
    )


def wait_for(log: Path, text: str, process: subprocess.Popen[bytes], timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        output = log.read_text()
        if text in output:
            return output
        if process.poll() is not None:
            raise AssertionError(f"musehub dev exited early:\n{output}")
        time.sleep(0.2)
    raise AssertionError(f"no {text!r} within {timeout} s:\n{log.read_text()}")


def stop(process: subprocess.Popen[bytes], log: Path) -> None:
    """Ctrl-C, and the stack must exit 0 (its output is the message when it does not)."""
    process.send_signal(signal.SIGINT)
    assert process.wait(60) == 0, log.read_text()


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_dev_starts_everything_heals_restarts_with_its_state_and_stops_cleanly(
    dev_env: dict[str, str], tmp_path: Path
) -> None:
    api = f"http://127.0.0.1:{dev_env['MUSEHUB_API_PORT']}"
    log = tmp_path / "dev.log"
    process = start(dev_env, log)
    try:
        output = wait_for(log, "Ready.", process)
        assert f"API            {api}" in output
        assert (
            f"Temporal UI    http://127.0.0.1:{dev_env['MUSEHUB_DEV_TEMPORAL_UI_PORT']}" in output
        )
        assert f"127.0.0.1:{dev_env['MUSEHUB_DEV_POSTGRES_PORT']}/musehub" in output
        assert httpx.get(f"{api}/health").json() == {"status": "ok", "database": "ok"}
        assert httpx.get(f"{api}/health/live").json() == {"status": "ok"}
        # Its two API processes add up their metrics: every scrape counts both. Both hear every
        # change to a repo's refs from the database (the migrated triggers, their own LISTEN).
        deadline = time.monotonic() + 60
        for line in ('musehub_processes{role="api"} 2.0', "musehub_refs_listening 2.0"):
            while line not in httpx.get(f"{api}/metrics").text:
                assert time.monotonic() < deadline, f"no {line!r} in the summed metrics"
                time.sleep(0.2)
        ready = httpx.get(f"{api}/health/ready", timeout=10)
        assert (ready.status_code, ready.json()["status"]) == (200, "ok"), ready.text
        ui = httpx.get(f"http://127.0.0.1:{dev_env['MUSEHUB_DEV_TEMPORAL_UI_PORT']}/")
        assert ui.status_code == 200
        created = subprocess.run(
            [*MUSEHUB, "repo", "create", "alice/song"],
            env=dev_env,
            capture_output=True,
            text=True,
            check=True,
        )
        assert "created public code repository alice/song" in created.stdout
        survivors = kill_children_and_see_them_back(
            process, log, Path(dev_env["MUSEHUB_STATE_DIR"]), api
        )
    finally:
        stop(process, log)
    assert "stopping" in log.read_text()
    assert_groups_gone(survivors)
    ports = [
        int(dev_env[k])
        for k in (
            "MUSEHUB_API_PORT",
            "MUSEHUB_DEV_POSTGRES_PORT",
            "MUSEHUB_DEV_TEMPORAL_PORT",
            "MUSEHUB_DEV_TEMPORAL_UI_PORT",
        )
    ]
    assert all(port_is_free(p) for p in ports), "a part kept running after Ctrl-C"

    again = start(dev_env, tmp_path / "dev2.log")
    parts: list[psutil.Process] = []
    try:
        wait_for(tmp_path / "dev2.log", "Ready.", again)
        refs = httpx.get(f"{api}/alice/song/refs")
        assert refs.status_code == 200
        assert msgpack.unpackb(refs.content)["default_branch"] == "main"  # the repo survived
        # Killed outright this time (SIGKILL: no handler runs): its parts end with it
        # (devstack/orphans.py) instead of running on and holding their ports.
        parts = psutil.Process(again.pid).children()
        assert len(parts) == 4, [p.cmdline()[:4] for p in parts]  # PG, Temporal, worker, API
        again.send_signal(signal.SIGKILL)
        again.wait(10)
        deadline = time.monotonic() + PARTS_GONE_WITHIN_S
        while (left := [p for p in parts if _running(p)]) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert left == [], [p.cmdline()[:4] for p in left]
    finally:
        if again.poll() is None:
            stop(again, tmp_path / "dev2.log")
        for part in parts:  # whatever a failure above left running
            if _running(part):
                part.kill()


def _running(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_busy_api_port_is_one_clear_line(dev_env: dict[str, str]) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", int(dev_env["MUSEHUB_API_PORT"])))
        holder.listen()
        result = subprocess.run(
            [*MUSEHUB, "dev"], env=dev_env, capture_output=True, text=True, timeout=60
        )
    assert result.returncode != 0
    assert f"port {dev_env['MUSEHUB_API_PORT']} on 127.0.0.1 is already in use" in result.stderr


@pytest.mark.parametrize(
    "name, value, expected",
    [
        ("MUSEHUB_STORAGE_BACKEND", "ftp", "bad setting MUSEHUB_STORAGE_BACKEND"),
        ("MUSEHUB_DATABASE_URL", "mysql://x/y", "bad setting MUSEHUB_DATABASE_URL"),
        ("MUSEHUB_STORAGE_S3_ENDPOINT_URL", "not a url", "bad setting MUSEHUB_STORAGE"),
    ],
)
def test_bad_settings_stop_startup_with_one_line(
    dev_env: dict[str, str], name: str, value: str, expected: str
) -> None:
    result = subprocess.run(
        [*MUSEHUB, "dev"], env={**dev_env, name: value}, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], result.stderr


def test_s3_backend_without_a_bucket_names_the_setting(dev_env: dict[str, str]) -> None:
    result = subprocess.run(
        [*MUSEHUB, "dev"],
        env={**dev_env, "MUSEHUB_STORAGE_BACKEND": "s3"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "MUSEHUB_STORAGE_S3_BUCKET" in result.stderr
