"""The folder where a command's processes add up their Prometheus metrics (`musehub/metrics.py`).

prometheus_client decides at import whether values live in memory or in mmap'd files in
`PROMETHEUS_MULTIPROC_DIR`, so the folder is chosen here, in the command, before anything
imports it; uvicorn's worker processes inherit the variable. Each start gets a fresh, empty
folder (counts left by an earlier run would be added to this one's), removed when the command
ends; folders of commands that were killed are removed by the next start on the host. An
inherited variable is never used: it could name a folder another run still writes to."""

from __future__ import annotations

import os
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
PREFIX = "musehub-metrics-"
# musehub-metrics-<pid of the command>-<random>
_FOLDER = re.compile(rf"{PREFIX}(\d+)-\w+")


@contextmanager
def metrics_dir(processes: int) -> Iterator[Path | None]:
    """While the block runs, the folder `processes` processes share (None for one: it keeps
    its own registry in memory, with no files to write)."""
    if "prometheus_client" in sys.modules:
        raise RuntimeError("prometheus_client was imported before the metrics folder was chosen")
    os.environ.pop(VARIABLE, None)
    if processes <= 1:
        yield None
        return
    try:
        parent = Path(tempfile.gettempdir())  # TMPDIR moves it, e.g. to a tmpfs
        remove_abandoned(parent)
        folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=parent))
    except OSError as exc:
        raise RuntimeError(
            f"cannot create the metrics folder of the API's processes ({exc}); "
            "set TMPDIR to a writable folder"
        ) from None
    os.environ[VARIABLE] = str(folder)
    try:
        yield folder
    finally:
        os.environ.pop(VARIABLE, None)
        shutil.rmtree(folder, ignore_errors=True)


def remove_abandoned(parent: Path) -> int:
    """Remove the folders of commands that are no longer running; returns how many. Only real
    folders of this user: in a shared temp folder, a name alone proves nothing."""
    removed = 0
    for path in parent.glob(f"{PREFIX}*"):
        match = _FOLDER.fullmatch(path.name)
        if match and _own_folder(path) and not is_running(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    return removed


def _own_folder(path: Path) -> bool:
    try:
        info = path.lstat()
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()


def is_running(pid: int) -> bool:
    """Whether a process of this host (this pid namespace) has this pid."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # running, under another user
        return True
    return True
