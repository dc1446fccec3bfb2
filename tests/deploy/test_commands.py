"""The compose services' commands, run from this venv's `musehub` script with the environment
compose gives them (image and service), only the addresses swapped for the suite's real
PostgreSQL, Temporal and S3 endpoint: each starts, answers its health check, and stops."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from musehub.devstack.ports import free_port
from tests.deploy.files import compose, dockerfile, dockerfile_env, environment
from tests.processes import stop_group
from tests.storage.s3_server import ACCESS_KEY_ID, SECRET_ACCESS_KEY, MotoS3

SCRIPT = Path(sys.executable).parent / "musehub"  # the console entry point pip installed
SERVICES = compose()["services"]
IMAGE_HEALTHCHECK = next(i for i in dockerfile() if i.keyword == "HEALTHCHECK").arguments


@pytest.fixture
def service_env(
    postgres_server_url: str,
    db_engine: AsyncEngine,  # migrated
    temporal_env: WorkflowEnvironment,
    moto_s3: MotoS3,
    tmp_path: Path,
) -> Iterator[Callable[[str], dict[str, str]]]:
    """A compose service's environment, pointed at the suite's parts; a GC schedule of its own
    on a queue of its own, so no scheduled run reaches another test's worker."""
    bucket = moto_s3.create_bucket()
    tag = uuid.uuid4().hex[:8]
    here = {
        "MUSEHUB_STATE_DIR": str(tmp_path / "state"),
        "MUSEHUB_DATABASE_URL": postgres_server_url,
        "MUSEHUB_TEMPORAL_ADDRESS": temporal_env.client.service_client.config.target_host,
        "MUSEHUB_STORAGE_S3_ENDPOINT_URL": moto_s3.endpoint_url,
        "MUSEHUB_STORAGE_S3_BUCKET": bucket,
        "MUSEHUB_STORAGE_S3_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "MUSEHUB_STORAGE_S3_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        "MUSEHUB_TEMPORAL_TASK_QUEUE": f"deploy-{tag}",
        "MUSEHUB_TEMPORAL_PREBUILD_TASK_QUEUE": f"deploy-prebuild-{tag}",
        "MUSEHUB_GC_SCHEDULE_ID": f"deploy-gc-{tag}",
        "MUSEHUB_GC_INTERVAL_MINUTES": "100000",
    }

    def env_of(service: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MUSEHUB_")}
        env.update(dockerfile_env(dockerfile()))
        env.update(environment(SERVICES[service]))
        env.update(here)
        return env

    yield env_of
    asyncio.run(_delete_schedule(here["MUSEHUB_TEMPORAL_ADDRESS"], here["MUSEHUB_GC_SCHEDULE_ID"]))


async def _delete_schedule(address: str, schedule_id: str) -> None:
    client = await Client.connect(address)
    try:
        await client.get_schedule_handle(schedule_id).delete()
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise


def command_of(service: str) -> list[str]:
    command = [str(part) for part in SERVICES[service]["command"]]
    assert command[0] == "musehub"
    return [str(SCRIPT), *command[1:]]


def run_check(check: list[str], env: dict[str, str]) -> int:
    return subprocess.run(check, env=env, capture_output=True, timeout=30).returncode


def wait_until(check: Callable[[], bool], process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"exited with {process.returncode}:\n{log.read_text()}")
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"not healthy within 90 s:\n{log.read_text()}")


def stop(process: subprocess.Popen[bytes], log: Path) -> None:
    """SIGTERM, as an engine stops a container: the command exits 0. Whatever happens, nothing
    of its session is left running."""
    process.send_signal(signal.SIGTERM)
    try:
        assert process.wait(60) == 0, log.read_text()
    finally:
        stop_group(process)


@pytest.mark.parametrize("command", ["api", "worker"])
def test_the_servers_commands_exist_in_the_venv(command: str) -> None:
    result = subprocess.run([str(SCRIPT), command, "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and f"usage: musehub {command}" in result.stdout


def test_migrate_and_schedules_steps_succeed(
    service_env: Callable[[str], dict[str, str]],
) -> None:
    migrated = subprocess.run(
        command_of("migrate"), env=service_env("migrate"), capture_output=True, text=True
    )
    assert migrated.returncode == 0, migrated.stderr
    assert "database is at the newest schema" in migrated.stdout
    applied = subprocess.run(
        command_of("schedules"), env=service_env("schedules"), capture_output=True, text=True
    )
    assert applied.returncode == 0, applied.stderr


def test_the_api_service_passes_the_images_health_check_and_is_ready(
    service_env: Callable[[str], dict[str, str]], tmp_path: Path
) -> None:
    env = service_env("api")
    env.update(MUSEHUB_API_HOST="127.0.0.1", MUSEHUB_API_PORT=str(free_port()))
    check = ["sh", "-c", IMAGE_HEALTHCHECK.split(" CMD ", 1)[1]]
    assert run_check(check, env) != 0  # nothing listens yet: the check can fail
    log = tmp_path / "api.log"
    api = subprocess.Popen(
        command_of("api"),
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_until(lambda: run_check(check, env) == 0, api, log)
        ready = httpx.get(f"http://127.0.0.1:{env['MUSEHUB_API_PORT']}/health/ready", timeout=10)
        assert ready.status_code == 200, ready.text
    finally:
        stop(api, log)


def test_the_worker_service_passes_its_health_check(
    service_env: Callable[[str], dict[str, str]], tmp_path: Path
) -> None:
    env = service_env("worker")
    env.update(
        MUSEHUB_TEMPORAL_WORKER_METRICS_HOST="127.0.0.1",
        MUSEHUB_TEMPORAL_WORKER_METRICS_PORT=str(free_port()),
    )
    test = SERVICES["worker"]["healthcheck"]["test"]
    assert test[0] == "CMD"
    check = [sys.executable if part == "python" else part for part in test[1:]]
    log = tmp_path / "worker.log"
    worker = subprocess.Popen(
        command_of("worker"),
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_until(lambda: run_check(check, env) == 0, worker, log)
    finally:
        stop(worker, log)
