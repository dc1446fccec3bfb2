"""Move a working tree from one commit's tree to another's, refusing to lose a local change.

``plan_update`` compares the two manifests: paths to write (new, or with another object) and tracked
paths to remove. ``apply_update`` first checks every path it would touch: a file that differs from
what the old tree holds there (edited, or an untracked file where the new tree puts one) stops
the update before anything is written, with the paths named. Files are then written through a
temporary name and one rename each (a killed update leaves whole files, old or new), and
emptied folders are removed. Paths that would escape the working tree are skipped, as a clone
skips them.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from musehub.client.layout import LayoutError, MuseDir, safe_work_path

MAX_NAMED_PATHS = 10


class LocalChanges(LayoutError):
    """Files in the working tree differ from the commit checked out; the update would lose them."""


@dataclass
class TreeUpdate:
    write: dict[str, str] = field(default_factory=dict)  # path -> object id
    remove: list[str] = field(default_factory=list)
    skipped_paths: list[str] = field(default_factory=list)


def plan_update(old: dict[str, str], new: dict[str, str]) -> TreeUpdate:
    update = TreeUpdate()
    for rel, object_id in sorted(new.items()):
        if old.get(rel) != object_id:
            update.write[rel] = object_id
    update.remove = sorted(set(old) - set(new))
    return update


def apply_update(repo: MuseDir, old: dict[str, str], update: TreeUpdate) -> None:
    """Carry out ``update`` on ``repo``'s working tree, which should hold ``old``."""
    targets = {rel: safe_work_path(repo.root, rel) for rel in [*update.write, *update.remove]}
    update.skipped_paths = [rel for rel, path in targets.items() if path is None]
    changed = [
        rel
        for rel, path in targets.items()
        if path is not None and _differs(path, old.get(rel), update.write.get(rel))
    ]
    if changed:
        more = " …" if len(changed) > MAX_NAMED_PATHS else ""
        named = ", ".join(changed[:MAX_NAMED_PATHS]) + more
        raise LocalChanges(
            f"{len(changed)} file(s) in the working tree have changes the update would "
            f"overwrite ({named}); commit or move them away, then pull again"
        )
    for rel, object_id in update.write.items():
        if not repo.object_path(object_id).is_file():
            raise LayoutError(f"object {object_id} for {rel} is missing from .muse")
    for rel, object_id in update.write.items():
        path = targets[rel]
        if path is not None:
            _replace_file(path, repo.object_path(object_id).read_bytes())
    for rel in update.remove:
        path = targets[rel]
        if path is not None:
            path.unlink(missing_ok=True)
            _remove_empty_folders(path.parent, repo.root)


def _differs(path: Path, old_id: str | None, new_id: str | None) -> bool:
    """Whether the file at ``path`` holds something neither tree expects there."""
    if not path.exists():
        return False
    if not path.is_file() or path.is_symlink():
        return True
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    return actual not in (old_id, new_id)


def _replace_file(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.muse-tmp")
    tmp.write_bytes(content)
    os.replace(tmp, path)


def _remove_empty_folders(folder: Path, root: Path) -> None:
    while folder != root and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent
