"""System tools some scenarios drive: `wrk` (64-connection load) and `git` (the clone baseline).
Checked before the stack starts, so a missing one costs seconds, not a half-finished run."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence

NEEDS = {
    "warm_fetch": ["wrk"],
    "metrics_cost": ["wrk"],
    "push_to_warm": ["wrk"],
    "clone_vs_git": ["git"],
}
APT_PACKAGES = {"wrk": "wrk", "git": "git"}


def missing_tools(scenarios: Sequence[str]) -> list[str]:
    wanted = sorted({tool for s in scenarios for tool in NEEDS.get(s, [])})
    return [tool for tool in wanted if shutil.which(tool) is None]


def check_tools(scenarios: Sequence[str], *, install: bool = False) -> None:
    missing = missing_tools(scenarios)
    if not missing:
        return
    packages = [APT_PACKAGES[t] for t in missing]
    command = ["apt-get", "install", "-y", *packages]
    if install and shutil.which("apt-get") and os.geteuid() == 0:
        subprocess.run(["apt-get", "update", "-qq"], check=True, timeout=600)
        subprocess.run(command, check=True, timeout=600)
        if not missing_tools(scenarios):
            return
    raise SystemExit(
        f"bench: {', '.join(missing)} not found; install with "
        f"`apt-get update && {' '.join(command)}` (or pass --install-tools as root), "
        "or leave out the scenarios that need them with --only"
    )
