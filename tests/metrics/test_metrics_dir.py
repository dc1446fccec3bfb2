"""The folders `musehub api` leaves when it is killed go at the next start; nothing else does."""

from __future__ import annotations

import os
from pathlib import Path

from musehub.metrics_dir import PREFIX, remove_abandoned
from tests.processes import dead_pid


def test_only_folders_of_commands_that_are_gone_are_removed(tmp_path: Path) -> None:
    gone = dead_pid()
    abandoned = tmp_path / f"{PREFIX}{gone}-abc123"
    running = tmp_path / f"{PREFIX}{os.getpid()}-def456"
    elsewhere = tmp_path / "precious"
    for folder in (abandoned, running, elsewhere):
        folder.mkdir()
        (folder / "counter_1.db").write_bytes(b"x")
    link = tmp_path / f"{PREFIX}{gone}-link01"  # a name alone proves nothing
    link.symlink_to(elsewhere)
    plain_file = tmp_path / f"{PREFIX}{gone}-file01"
    plain_file.write_text("not a folder")
    other = tmp_path / f"{PREFIX}notapid-x"
    other.mkdir()

    assert remove_abandoned(tmp_path) == 1
    assert not abandoned.exists()
    assert running.exists() and link.is_symlink() and plain_file.exists() and other.exists()
    assert (elsewhere / "counter_1.db").read_bytes() == b"x"
