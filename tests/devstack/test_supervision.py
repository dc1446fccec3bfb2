"""`musehub dev` supervises its children (issue 12, item 8): a worker or API process that dies
is restarted with backoff and one log line, the rest keeps running, and only Ctrl-C stops it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from musehub.devstack.supervisor import Backoff, describe_exit
from tests.devstack.test_dev_command import dev_env, port_is_free, start, stop, wait_for

__all__ = ["dev_env"]  # the fixture, shared with test_dev_command


def _pid(output: str, name: str, after: int = 0) -> int:
    """The pid of the `after`-th (0: first) start of `name` the stack reported."""
    pids = [int(p) for p in re.findall(rf"started the {name} \(pid (\d+)", output)]
    assert len(pids) > after, output
    return pids[after]


def _wait_count(
    log: Path, text: str, count: int, process: subprocess.Popen[bytes], timeout: float = 60
) -> str:
    deadline = time.monotonic() + timeout
    while (output := log.read_text()).count(text) < count:
        assert time.monotonic() < deadline and process.poll() is None, output
        time.sleep(0.1)
    return output


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid)


def _state(pid: int) -> str:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return "gone"
    return next((line for line in status.splitlines() if line.startswith("State:")), "")


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def _health(api: str) -> int:
    try:
        return httpx.get(f"{api}/health", timeout=2).status_code
    except httpx.HTTPError:
        return 0


def test_killed_worker_and_api_come_back_and_ctrl_c_still_stops_everything(
    dev_env: dict[str, str], tmp_path: Path
) -> None:
    api = f"http://127.0.0.1:{dev_env['MUSEHUB_API_PORT']}"
    log = tmp_path / "dev.log"
    worker_log = Path(dev_env["MUSEHUB_STATE_DIR"]) / "worker.log"
    process = start(dev_env, log)
    try:
        output = wait_for(log, "Ready.", process)
        first_worker = _pid(output, "worker")
        first_api = _pid(output, "api")

        os.kill(first_worker, signal.SIGKILL)
        answers = []
        deadline = time.monotonic() + 60
        while log.read_text().count("started the worker (pid") < 2:
            assert time.monotonic() < deadline, log.read_text()
            assert process.poll() is None, log.read_text()
            answers.append(_health(api))
            time.sleep(0.1)
        assert answers and set(answers) == {200}, answers  # the API kept answering
        output = log.read_text()
        assert "the worker was killed by SIGKILL; restarting it in 1 s" in output
        second_worker = _pid(output, "worker", after=1)
        assert second_worker != first_worker and _alive(second_worker)
        deadline = time.monotonic() + 60
        while worker_log.read_text().count("worker polling") < 2:  # it connected again
            assert time.monotonic() < deadline, worker_log.read_text()
            time.sleep(0.2)

        os.kill(second_worker, signal.SIGKILL)  # dies again at once: the wait doubles
        wait_for(log, "the worker was killed by SIGKILL; restarting it in 2 s", process, 30)
        third_worker = _pid(_wait_count(log, "started the worker (pid", 3, process), "worker", 2)

        os.kill(first_api, signal.SIGKILL)  # uvicorn's own workers are left orphaned
        wait_for(log, "the api was killed by SIGKILL; restarting it in 1 s", process, 30)
        second_api = _pid(_wait_count(log, "started the api (pid", 2, process), "api", 1)
        deadline = time.monotonic() + 60
        while _health(api) != 200:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        assert _group_gone(first_api), "the killed API's own workers were left running"
    finally:
        assert stop(process) == 0
    assert "stopping" in log.read_text()
    for pid in (third_worker, second_api):
        assert _group_gone(pid), f"process group {pid} outlived Ctrl-C"
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


def test_backoff_doubles_up_to_its_cap_and_resets_after_a_healthy_stretch() -> None:
    backoff = Backoff(initial=1.0, cap=8.0, healthy_after=60.0)
    assert [backoff.next_delay(ran_for=0.5) for _ in range(6)] == [1, 2, 4, 8, 8, 8]
    assert backoff.next_delay(ran_for=61.0) == 1.0
    assert backoff.next_delay(ran_for=3.0) == 2.0


@pytest.mark.parametrize(
    ("code", "text"),
    [(-9, "was killed by SIGKILL"), (-15, "was killed by SIGTERM"), (3, "exited with code 3")],
)
def test_exit_descriptions(code: int, text: str) -> None:
    assert describe_exit(code) == text
