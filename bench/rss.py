"""Peak RSS of this process, for the child processes the memory scenario measures."""

from __future__ import annotations

import resource
from pathlib import Path


def peak_rss_kib() -> int:
    """VmHWM: this process image's peak RSS. Not `ru_maxrss`, which Linux carries over from the
    parent across fork + exec, so a child of a big parent would report the parent's peak."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:  # no procfs (not Linux): the kernel's own peak, in KiB on Linux-likes
        status = ""
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
