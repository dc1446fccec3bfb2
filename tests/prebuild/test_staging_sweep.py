"""A worker starting up removes the staging folders a killed worker left behind, and only
those: a folder a live build still writes to stays."""

from __future__ import annotations

import os
import time
from pathlib import Path

from musehub.services.staging import STALE_STAGING_SECONDS, StagingArea


def sweeper(root: Path) -> StagingArea:
    """The sweep touches no storage."""
    return StagingArea(root, None)  # type: ignore[arg-type]


def staging_folder(root: Path, name: str, age_seconds: float) -> Path:
    folder = root / name
    (folder / "objects").mkdir(parents=True)
    (folder / "objects" / "blob").write_bytes(b"x")
    (folder / "plan.json").write_text("{}")
    when = time.time() - age_seconds
    for path in [folder, *folder.rglob("*")]:
        os.utime(path, (when, when))
    return folder


def test_only_folders_untouched_for_long_are_removed(tmp_path: Path) -> None:
    root = tmp_path / "prebuild"
    abandoned = staging_folder(root, "abandoned", STALE_STAGING_SECONDS + 60)
    live = staging_folder(root, "live", STALE_STAGING_SECONDS + 60)
    (live / "pack.mpack.partial").write_bytes(b"being written now")
    fresh = staging_folder(root, "fresh", 5)
    assert sweeper(root).sweep_stale() == 1
    assert not abandoned.exists()
    assert live.exists() and fresh.exists()


def test_no_staging_folder_yet_is_fine(tmp_path: Path) -> None:
    assert sweeper(tmp_path / "new").sweep_stale() == 0
