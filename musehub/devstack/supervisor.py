"""Keeps `musehub dev`'s worker and API running: a child that dies is restarted after a wait
that doubles with each quick death (1 s, 2 s, 4 s … capped at 30 s) and starts over at 1 s once
a child has run for a healthy minute. Each child runs in its own process group, so its own
children (uvicorn's worker processes) go with it: a killed uvicorn would otherwise leave them
holding the API port."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from musehub.devstack.orphans import ends_with_parent

INITIAL_DELAY = 1.0
MAX_DELAY = 30.0
HEALTHY_AFTER = 60.0
STOP_TIMEOUT = 20.0
GROUP_GONE_TIMEOUT = 2.0


@dataclass
class Backoff:
    """The wait before the next restart: doubles per quick death, resets after a healthy run."""

    initial: float = INITIAL_DELAY
    cap: float = MAX_DELAY
    healthy_after: float = HEALTHY_AFTER
    _next: float = field(default=0.0, init=False)

    def next_delay(self, *, ran_for: float) -> float:
        if ran_for >= self.healthy_after or self._next == 0.0:
            self._next = self.initial
        delay = self._next
        self._next = min(self._next * 2, self.cap)
        return delay


def describe_exit(code: int) -> str:
    """`Popen.returncode` in words: a negative code is the signal that ended the process."""
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


@dataclass
class SupervisedChild:
    """One child process: started, watched and restarted by `poll`, stopped by `stop`."""

    name: str
    command: list[str]
    env: dict[str, str]
    log_path: Path
    say: Callable[[str], None]
    backoff: Backoff = field(default_factory=Backoff)
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    _started_at: float = 0.0
    _restart_at: float | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            # Own session: the terminal's Ctrl-C reaches only `musehub dev`, which stops the
            # parts in order; and the group id lets us stop whatever the child started too.
            self.process = subprocess.Popen(
                self.command,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=ends_with_parent(),
            )
        self._started_at = time.monotonic()
        self._restart_at = None
        self.say(f"started the {self.name} (pid {self.process.pid}; log {self.log_path})")

    def exit_code(self) -> int | None:
        """The exit code if the child has died and not been restarted yet, else None."""
        return None if self.process is None else self.process.poll()

    def poll(self) -> None:
        """Notice a death (clean up its group, schedule the restart) or restart when due."""
        now = time.monotonic()
        if self._restart_at is not None:
            if now >= self._restart_at:
                self.restarts += 1
                self.start()
            return
        code = self.exit_code()
        if code is None:
            return
        assert self.process is not None
        _kill_group(self.process.pid, signal.SIGKILL)
        delay = self.backoff.next_delay(ran_for=now - self._started_at)
        self._restart_at = now + delay
        self.say(
            f"the {self.name} {describe_exit(code)}; restarting it in {delay:g} s "
            f"(restart {self.restarts + 1}; log {self.log_path})"
        )

    def stop(self) -> None:
        """Ask the child to stop (SIGINT, as Ctrl-C would), then kill what is left of its group."""
        self._restart_at = None
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)

    def wait_stopped(self, timeout: float = STOP_TIMEOUT) -> None:
        if self.process is None:
            return
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        _kill_group(self.process.pid, signal.SIGKILL)
        deadline = time.monotonic() + GROUP_GONE_TIMEOUT
        while _kill_group(self.process.pid, 0) and time.monotonic() < deadline:
            time.sleep(0.05)  # killed members are not gone until their new parent reaps them


def _kill_group(pgid: int, signum: int) -> bool:
    """Signal what is left of a child's process group; False when nothing is left."""
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        return False
    return True
