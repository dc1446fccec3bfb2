"""Timing a command-line tool as a user runs it, and comparing the trees two tools checked out:
shared by scenario 3's clones and pulls (`scenarios/clone_vs_git.py`, `pull_rounds.py`)."""

from __future__ import annotations

import hashlib
import resource
import subprocess
import threading
import time
from pathlib import Path

COMMAND_TIMEOUT_S = 600.0


def timed(command: list[str], env: dict[str, str] | None = None) -> float:
    return timed_cpu(command, env)[0]


def timed_cpu(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Wall seconds, and the CPU seconds (user + system) the command and its children used:
    what a loaded machine changes least, so the number to compare across runs."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)  # only children waited for count
    began = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, env=env)
    # Not `subprocess.run(timeout=...)`: with a timeout, `wait` polls with sleeps growing to
    # 50 ms, so every time read rounds up to the next step of that ladder (a 70 ms process reads
    # 115 ms). A blocking wait returns at the exit; a timer enforces the timeout instead.
    killer = threading.Timer(COMMAND_TIMEOUT_S, process.kill)
    killer.start()
    try:
        returncode = process.wait()
    finally:
        killer.cancel()
    seconds = time.perf_counter() - began
    if returncode != 0:
        raise subprocess.CalledProcessError(returncode, command)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu


def tree_digest(root: Path) -> str:
    """sha256 over every checked-out file's path and bytes, VCS folders left out."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root)
        if relative.parts[0] in (".git", ".muse"):
            continue
        digest.update(str(relative).encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()
