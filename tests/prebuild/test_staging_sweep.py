"""Workers sweep up the staging folders no live worker owns: a killed worker's at once, whatever
its age (its lock went with the process), and never a live worker's. Folders without a lock (the
layout before worker folders, a claim cut short) go by age, and a folder a build still writes to
stays."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from musehub.services.staging import (
    CLAIMING_PREFIX,
    LOCK_FILE,
    STALE_STAGING_SECONDS,
    StagingArea,
    sweep_abandoned,
)

# A worker process, as far as staging goes: it claims a folder, stages a blob, and lives on.
WORKER = """
import sys, time
from pathlib import Path
from musehub.services.staging import StagingArea
area = StagingArea.claim(Path(sys.argv[1]), None)
(area.build_folder("b1") / "objects").mkdir(parents=True)
(area.build_folder("b1") / "objects" / "blob").write_bytes(b"x" * 1000)
print(area.folder, flush=True)
time.sleep(600)
"""


def staging_folder(root: Path, name: str, age_seconds: float) -> Path:
    folder = root / name
    (folder / "objects").mkdir(parents=True)
    (folder / "objects" / "blob").write_bytes(b"x")
    when = time.time() - age_seconds
    for path in [folder, *folder.rglob("*")]:
        os.utime(path, (when, when))
    return folder


def test_a_killed_workers_folder_is_removed_at_once(tmp_path: Path) -> None:
    root = tmp_path / "prebuild"
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(root)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert worker.stdout is not None
        folder = Path(worker.stdout.readline().strip())
        assert (folder / "b1" / "objects" / "blob").exists()
        assert sweep_abandoned(root) == 0  # its worker lives
        assert folder.exists()
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert sweep_abandoned(root) == 1  # seconds old, and gone: nobody holds its lock
    assert not folder.exists()


def test_this_workers_own_folder_stays_until_it_releases_it(tmp_path: Path) -> None:
    root = tmp_path / "prebuild"
    area = StagingArea.claim(root, None)  # type: ignore[arg-type]
    try:
        area.build_folder("b1").mkdir()
        assert sweep_abandoned(root) == 0
        assert area.build_folder("b1").exists()
    finally:
        area.release()
    assert list(root.iterdir()) == []  # a clean shutdown leaves nothing


def test_folders_without_a_lock_go_by_age(tmp_path: Path) -> None:
    root = tmp_path / "prebuild"
    abandoned = staging_folder(root, "abandoned", STALE_STAGING_SECONDS + 60)
    live = staging_folder(root, "live", STALE_STAGING_SECONDS + 60)
    (live / "pack.mpack.partial").write_bytes(b"being written now")
    fresh = staging_folder(root, "fresh", 5)
    # A claim between making its folder and renaming it: its lock is not held yet.
    claiming = staging_folder(root, CLAIMING_PREFIX + "x", 5)
    (claiming / LOCK_FILE).touch()
    assert sweep_abandoned(root) == 1
    assert not abandoned.exists()
    assert live.exists() and fresh.exists() and claiming.exists()


def test_no_staging_folder_yet_is_fine(tmp_path: Path) -> None:
    assert sweep_abandoned(tmp_path / "new") == 0
