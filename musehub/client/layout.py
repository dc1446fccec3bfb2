"""The on-disk ``.muse`` repository, written the way the muse client writes it.

Read off the muse client's own source (github.com/cgcardona/muse: ``muse/core/store.py``,
``muse/core/object_store.py``, ``muse/cli/commands/clone.py`` and ``init.py``,
``muse/cli/config.py``, ``muse/core/workdir.py``)::

    <root>/                          working tree (the repository root itself)
    <root>/.muse/
        repo.json                    {"repo_id", "schema_version": "2", "created_at", "domain"}
        HEAD                         "refs/heads/<branch>\\n" (no "ref: " prefix)
        refs/heads/<branch>          the commit id, no trailing newline
        remotes/<remote>/<branch>    last known remote head (tracking pointer)
        config.toml                  [remotes.origin] url = "...", branch = "<default>"
        objects/<id[:2]>/<id[2:]>    raw blob bytes, content-addressed by sha256
        commits/<commit_id>.json     the CommitDict, JSON, indent 2, trailing newline
        snapshots/<snapshot_id>.json the SnapshotDict, same encoding

Records are stored as received: every CommitDict key the hub returns is kept. The JSON bytes
are exactly ``json.dumps(record, indent=2)`` plus a newline (what the muse client writes); orjson
produces them when that is provably the same, and the standard library otherwise.

A clone writes ``.muse`` in a staging folder beside ``root`` and renames it into place with
``publish`` only once the pack is verified: a failed or killed clone never leaves a ``.muse``.
"""

from __future__ import annotations

import datetime
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

MUSE_DIR = ".muse"
SCHEMA_VERSION = "2"
OBJECT_ID_RE = re.compile(r"^[0-9a-f]{64}$")
_BAD_BRANCH_CHARS = re.compile(r"[\x00-\x20\\~^:?*\[\x7f]")


class LayoutError(ValueError):
    """A record or name would not make a safe ``.muse`` layout."""


def check_object_id(object_id: str) -> None:
    if not OBJECT_ID_RE.match(object_id):
        raise LayoutError(f"not a muse id (64 lowercase hex characters): {object_id!r}")


def check_branch_name(branch: str) -> None:
    """Git-style ref name rules, as the muse client applies them; blocks path traversal."""
    parts = branch.split("/")
    if (
        not 1 <= len(branch) <= 255
        or _BAD_BRANCH_CHARS.search(branch)
        or ".." in branch
        or any(p in ("", ".") or p.startswith(".") or p.endswith(".lock") for p in parts)
        or branch.endswith(".")
    ):
        raise LayoutError(f"unsafe branch name from the remote: {branch!r}")


def safe_work_path(root: Path, rel: str) -> Path | None:
    """Where a manifest path lands in the working tree, or ``None`` if it would escape it."""
    pure = PurePosixPath(rel)
    if (
        not rel
        or "\\" in rel
        or "\x00" in rel
        or pure.is_absolute()
        or any(p in ("", ".", "..") for p in rel.split("/"))
        or pure.parts[0] == MUSE_DIR
    ):
        return None
    return root.joinpath(*pure.parts)


@dataclass
class CheckoutReport:
    files: int = 0
    skipped_paths: list[str] = field(default_factory=list)


class MuseDir:
    """A ``.muse`` directory under ``root`` (the working tree)."""

    def __init__(self, root: Path, *, staging: Path | None = None) -> None:
        self.root = root
        self.muse = staging if staging is not None else root / MUSE_DIR
        self._fanout_made: set[str] = set()

    def publish(self) -> None:
        """Move a staged ``.muse`` into ``root`` (one rename); the repository exists from now."""
        final = self.root / MUSE_DIR
        if self.muse != final:
            os.replace(self.muse, final)
            self.muse = final

    # -- identity, HEAD, config --------------------------------------------------------

    def init(self, *, repo_id: str, domain: str, default_branch: str) -> None:
        check_branch_name(default_branch)
        (self.muse / "refs" / "heads").mkdir(parents=True, exist_ok=True)
        for sub in ("objects", "commits", "snapshots"):
            (self.muse / sub).mkdir(exist_ok=True)
        meta = {
            "repo_id": repo_id,
            "schema_version": SCHEMA_VERSION,
            "created_at": datetime.datetime.now(datetime.UTC).isoformat(),
            "domain": domain,
        }
        _write_json(self.muse / "repo.json", meta)
        (self.muse / "HEAD").write_text(f"refs/heads/{default_branch}\n")

    def write_remote_config(self, name: str, url: str, branch: str) -> None:
        text = f'[remotes.{name}]\nurl = "{_toml_escape(url)}"\nbranch = "{_toml_escape(branch)}"\n'
        (self.muse / "config.toml").write_text(text)

    def remote_url(self, name: str) -> str | None:
        import tomllib

        try:
            config = tomllib.loads((self.muse / "config.toml").read_text())
        except (OSError, tomllib.TOMLDecodeError):
            return None
        url = config.get("remotes", {}).get(name, {}).get("url")
        return url if isinstance(url, str) and url else None

    def current_branch(self) -> str:
        head = (self.muse / "HEAD").read_text().strip()
        branch = head.removeprefix("ref: ").removeprefix("refs/heads/")
        check_branch_name(branch)
        return branch

    # -- refs ----------------------------------------------------------------------------

    def set_branch(self, branch: str, commit_id: str) -> None:
        check_branch_name(branch)
        check_object_id(commit_id)
        ref = self.muse / "refs" / "heads" / branch
        ref.parent.mkdir(parents=True, exist_ok=True)
        ref.write_text(commit_id)

    def set_remote_head(self, remote: str, branch: str, commit_id: str) -> None:
        check_branch_name(branch)
        check_object_id(commit_id)
        pointer = self.muse / "remotes" / remote / branch
        pointer.parent.mkdir(parents=True, exist_ok=True)
        pointer.write_text(commit_id)

    def drop_remote_head(self, remote: str, branch: str) -> None:
        check_branch_name(branch)
        (self.muse / "remotes" / remote / branch).unlink(missing_ok=True)

    def branches(self) -> dict[str, str]:
        """Local branches and their commits."""
        return _pointers(self.muse / "refs" / "heads")

    def remote_heads(self, remote: str) -> dict[str, str]:
        """The remote's branches as last seen (its tracking pointers)."""
        return _pointers(self.muse / "remotes" / remote)

    def has_commit(self, commit_id: str) -> bool:
        return os.path.isfile(os.path.join(self.muse, "commits", commit_id + ".json"))

    def adopt(self, staged: MuseDir) -> None:
        """Move the records a fetch staged in ``staged`` into this ``.muse``: objects, then
        snapshots, then commits, each with one rename, so a commit shows up only once all it
        names is here and a killed pull leaves no half-written file."""
        for kind in ("objects", "snapshots", "commits"):
            source = staged.muse / kind
            for src in sorted(source.rglob("*")):
                if not src.is_file():
                    continue
                dest = self.muse / kind / src.relative_to(source)
                if dest.exists():
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, dest)

    # -- objects and records -------------------------------------------------------------

    def object_path(self, object_id: str) -> Path:
        check_object_id(object_id)
        return self.muse / "objects" / object_id[:2] / object_id[2:]

    def write_object(self, object_id: str, content: bytes) -> bool:
        """Store verified bytes; ``False`` when already present (content addressed)."""
        path = self.object_path(object_id)
        if path.exists():
            return False
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_name(f".obj-tmp-{path.name}")
        tmp.write_bytes(content)
        tmp.replace(path)  # atomic: a crash never leaves a half-written object
        return True

    def write_new_object(self, object_id: str, content: bytes) -> bool:
        """``write_object`` for a staged ``.muse`` nothing else reads yet: no temp file and
        rename (the whole folder is published at once); ``False`` when already present."""
        check_object_id(object_id)
        fanout = object_id[:2]
        folder = os.path.join(self.muse, "objects", fanout)  # str paths: 1,000s of files
        if fanout not in self._fanout_made:
            os.makedirs(folder, exist_ok=True)
            self._fanout_made.add(fanout)
        try:
            write_file(os.path.join(folder, object_id[2:]), content, exclusive=True)
        except FileExistsError:
            return False
        return True

    def write_commit(self, commit: Mapping[str, Any]) -> None:
        commit_id = str(commit.get("commit_id", ""))
        check_object_id(commit_id)
        _write_json(os.path.join(self.muse, "commits", commit_id + ".json"), dict(commit))

    def write_snapshot(self, snapshot: Mapping[str, Any]) -> None:
        snapshot_id = str(snapshot.get("snapshot_id", ""))
        check_object_id(snapshot_id)
        _write_json(os.path.join(self.muse, "snapshots", snapshot_id + ".json"), dict(snapshot))

    def read_commit(self, commit_id: str) -> dict[str, Any] | None:
        return _read_json(self.muse / "commits" / f"{commit_id}.json")

    def read_snapshot(self, snapshot_id: str) -> dict[str, Any] | None:
        return _read_json(self.muse / "snapshots" / f"{snapshot_id}.json")

    # -- working tree --------------------------------------------------------------------

    def head_manifest(self, commit_id: str) -> dict[str, str]:
        commit = self.read_commit(commit_id)
        if commit is None:
            raise LayoutError(f"commit {commit_id} is not in the pack")
        snapshot = self.read_snapshot(str(commit.get("snapshot_id", "")))
        if snapshot is None:
            raise LayoutError(
                f"snapshot {commit.get('snapshot_id')} of {commit_id} is not in the pack"
            )
        manifest = snapshot.get("manifest") or {}
        return {str(p): str(o) for p, o in manifest.items()}

    def checkout(self, commit_id: str) -> CheckoutReport:
        """Write the commit's snapshot into the (fresh) working tree; unsafe paths are skipped."""
        report = CheckoutReport()
        for rel, object_id in sorted(self.head_manifest(commit_id).items()):
            dest = safe_work_path(self.root, rel)
            if dest is None:
                report.skipped_paths.append(rel)
                continue
            src = self.object_path(object_id)
            if not src.is_file():
                raise LayoutError(f"object {object_id} for {rel} is not in the pack")
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(src.read_bytes())
            report.files += 1
        return report


def _pointers(folder: Path) -> dict[str, str]:
    """Ref files under ``folder`` (branch names may hold ``/``) and the ids they hold."""
    found = {}
    for path in sorted(folder.rglob("*")) if folder.is_dir() else ():
        commit_id = path.read_text().strip() if path.is_file() else ""
        if OBJECT_ID_RE.match(commit_id):
            found[path.relative_to(folder).as_posix()] = commit_id
    return found


def _write_json(path: str | Path, value: Any) -> None:
    try:
        data = encode_json(value)
    except (TypeError, ValueError) as exc:
        name = os.path.basename(path)
        raise LayoutError(f"{name}: record is not JSON-serialisable: {exc}") from exc
    write_file(path, data)


_CREATE = os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


def write_file(path: str | Path, data: bytes, *, exclusive: bool = False) -> None:
    """``open(path, "xb" if exclusive else "wb").write(data)`` in three system calls: a clone
    writes thousands of files, and ``open()`` adds an ``fstat``, an ``ioctl`` and an ``lseek``
    to each (every one a release and re-take of the GIL the decoder thread wants)."""
    flags = _CREATE | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, 0o666)  # open()'s mode: 0o666 less the umask
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def encode_json(value: Any) -> bytes:
    """``json.dumps(value, indent=2) + "\\n"`` as bytes, by orjson when the bytes are the same.

    orjson writes non-ASCII characters (and DEL) raw where the standard library escapes them
    (re-escaped here, exactly as ``ensure_ascii`` does), and floats and integers past 64 bits
    its own way (those records go to the standard library).
    """
    out = _orjson(value) if _orjson_exact(value) else None
    if out is None:
        return (json.dumps(value, indent=2) + "\n").encode("ascii")
    if out.isascii() and b"\x7f" not in out:
        return out
    return _NON_ASCII.sub(_escape, out.decode("utf-8")).encode("ascii")


def _orjson(value: Any) -> bytes | None:
    import orjson

    try:
        return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
    except orjson.JSONEncodeError:  # e.g. a lone surrogate, which json.dumps escapes
        return None


_NON_ASCII = re.compile(r"[^\x00-\x7e]")  # json.dumps escapes DEL too
_INT64 = range(-(2**63), 2**64)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 | (code >> 10):04x}\\u{0xDC00 | (code & 0x3FF):04x}"


def _only_str(items: Iterable[Any]) -> bool:
    kinds = set(map(type, items))
    return kinds <= {str}


def _orjson_exact(value: Any) -> bool:
    """True when the record holds only what orjson writes as ``json.dumps`` does: str keys,
    strings, bools, None, 64-bit ints, lists and dicts (no floats, no subclasses)."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str or item is None or kind is bool:
            continue
        if kind is dict:
            if not _only_str(item):
                return False
            values = item.values()
            if not _only_str(values):  # a manifest: thousands of strings, checked in C
                stack.extend(values)
        elif kind is list:
            stack.extend(item)
        elif kind is int:
            if item not in _INT64:
                return False
        else:
            return False
    return True


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    value = json.loads(path.read_text())
    return value if isinstance(value, dict) else None


def _toml_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
