"""What a pull's first request needs, read without loading the client: the repository (the
nearest ``.muse`` at or above a folder), its remote's URL and its tips (the ``have``). Imports
nothing heavy, so ``musehub pull`` sends that request (``early.send_head_set_request`` with the
tips) before asyncio and the client load, as ``musehub clone`` does; ``pull.pull`` reads the
same here, so the two requests are the same bytes."""

from __future__ import annotations

from pathlib import Path

from musehub.client.clone_request import ORIGIN
from musehub.client.errors import PullError
from musehub.client.layout import MUSE_DIR, MuseDir


def open_repo(root: Path) -> MuseDir:
    """The repository at ``root`` or the nearest folder above it that holds a ``.muse``."""
    here = root.absolute()
    for folder in (here, *here.parents):
        if (folder / MUSE_DIR / "HEAD").is_file():
            return MuseDir(folder)
    raise PullError(f"{here} is not in a muse repository (no {MUSE_DIR} here or above)")


def local_tips(repo: MuseDir) -> list[str]:
    """What this clone holds, as the tips it reached: its branches and the remote's heads as
    last seen (the hub finds its chain positions among them)."""
    tips = {*repo.branches().values(), *repo.remote_heads(ORIGIN).values()}
    return sorted(c for c in tips if repo.has_commit(c))
