"""Children that end when `musehub dev` does, however it ends.

Ctrl-C and SIGTERM stop the parts in order. A `musehub dev` killed outright (SIGKILL, the OOM
killer, a crashed terminal's session) used to leave its worker, API, Temporal and PostgreSQL
running, holding their ports: the next `musehub dev` on those ports failed, and two stray
children of a killed stack were still running here 74 minutes later. On Linux each child asks
the kernel for a signal when its parent dies (`PR_SET_PDEATHSIG`). Elsewhere this does nothing.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def ends_with_parent(signum: signal.Signals = signal.SIGTERM) -> Callable[[], None] | None:
    """A `preexec_fn` for `subprocess.Popen`: the child gets `signum` when this process dies.
    libc is loaded here, before the fork: the child only makes the call."""
    if sys.platform != "linux":
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def set_parent_death_signal() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signum))
        if os.getppid() != parent:  # the parent died before the call: nobody will signal
            os.kill(os.getpid(), signum)

    return set_parent_death_signal
