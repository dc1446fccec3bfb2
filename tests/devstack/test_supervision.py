"""`musehub dev` supervises its children (issue 12, item 8): a worker or API process that dies
is restarted with backoff and one log line, the rest keeps running, and only Ctrl-C stops it.
The end-to-end check runs inside test_dev_command's test, which starts the stack anyway (each
start of `musehub dev` initialises a PostgreSQL and a Temporal: about 20 s)."""

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


def kill_children_and_see_them_back(
    process: subprocess.Popen[bytes], log: Path, state_dir: Path, api: str
) -> list[int]:
    """Kill the worker twice and the API once under a running `musehub dev` (started by
    test_dev_command, which shares its start-up with this check): each comes back with a longer
    wait after a quick death, the API keeps answering while the worker is gone, and a killed
    API takes its own workers with it. Returns the process groups Ctrl-C must then stop."""
    worker_log = state_dir / "worker.log"
    output = log.read_text()
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
    _wait_count(log, "the worker was killed by SIGKILL; restarting it in 2 s", 1, process, 30)
    third_worker = _pid(_wait_count(log, "started the worker (pid", 3, process), "worker", 2)

    os.kill(first_api, signal.SIGKILL)  # uvicorn's own workers are left orphaned
    _wait_count(log, "the api was killed by SIGKILL; restarting it in 1 s", 1, process, 30)
    second_api = _pid(_wait_count(log, "started the api (pid", 2, process), "api", 1)
    deadline = time.monotonic() + 60
    while _health(api) != 200:
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    assert _group_gone(first_api), "the killed API's own workers were left running"
    return [third_worker, second_api]


def assert_groups_gone(pgids: list[int]) -> None:
    for pgid in pgids:
        assert _group_gone(pgid), f"process group {pgid} outlived Ctrl-C"


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
