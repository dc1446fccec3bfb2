"""Processes the tests start or need gone: servers with worker processes of their own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped): no process has it now."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """Stop a server started in a session of its own, and whatever it started: SIGTERM first
    (uvicorn stops its workers), then SIGKILL to what is left (a failed test must leave no
    worker process behind)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()
