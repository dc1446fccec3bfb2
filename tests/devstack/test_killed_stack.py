"""`musehub dev` killed outright (SIGKILL: no handler runs) takes its parts with it: the worker,
the API, the Temporal dev server and PostgreSQL each end on their parent's death
(`devstack/orphans.py`) instead of running on and holding their ports."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import psutil

from tests.devstack.test_dev_command import dev_env, start, wait_for

__all__ = ["dev_env"]  # the fixture, shared with test_dev_command

GONE_WITHIN_S = 30.0


def test_a_killed_stack_leaves_no_part_running(dev_env: dict[str, str], tmp_path: Path) -> None:
    log = tmp_path / "dev.log"
    process = start(dev_env, log)
    parts: list[psutil.Process] = []
    try:
        wait_for(log, "Ready.", process)
        parts = psutil.Process(process.pid).children()
        names = [" ".join(p.cmdline()[:4]) for p in parts]
        assert len(parts) == 4, names  # PostgreSQL, Temporal, the worker, the API
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        deadline = time.monotonic() + GONE_WITHIN_S
        while (left := [p for p in parts if _running(p)]) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert left == [], [" ".join(p.cmdline()[:4]) for p in left]
    finally:
        process.kill()
        for part in parts:  # whatever a failure above left running
            if _running(part):
                part.kill()


def _running(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
