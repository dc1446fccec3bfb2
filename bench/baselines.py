"""What the hub is measured against: the original hub's serial build, and git.

`serial_build` is the loop that made clones of gabriel/muse time out: one `await storage.get`
at a time, every blob held in memory, then the whole bundle msgpack-encoded at once. It plans
with the hub's own query, so the comparison isolates the blob reads and the encoding.

`git_mirror` writes the same history as a git repository (same files per commit, same
branches, merges kept) with `git fast-import`, packed as a git host keeps it (`repack -adb`:
one pack with bitmaps); `GitDaemon` serves it on loopback."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import msgpack
from sqlalchemy.ext.asyncio import AsyncSession

from musehub.devstack.ports import free_port, wait_for_port
from musehub.services.mpack_build import _stored_records, plan_fetch
from musehub.storage import ObjectStorage
from musehub.synth import SynthRepo

GIT_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class SerialBuild:
    seconds: float
    pack_bytes: int
    blobs: int


async def serial_build(
    session: AsyncSession, storage: ObjectStorage, repo_id: str, want: Sequence[str]
) -> SerialBuild:
    started = time.perf_counter()
    plan = await plan_fetch(session, repo_id, want, [])
    commits = [
        msgpack.unpackb(r, raw=False)
        async for r in _stored_records(session, "musehub_commits", "commit_id", plan)
    ]
    snapshots = [
        msgpack.unpackb(r, raw=False)
        async for r in _stored_records(session, "musehub_snapshots", "snapshot_id", plan)
    ]
    objects = []
    for obj in plan.objects:  # one read at a time: the original hub's loop
        objects.append({"object_id": obj.object_id, "content": await storage.get(obj.storage_key)})
    body = msgpack.packb(
        {"commits": commits, "snapshots": snapshots, "objects": objects}, use_bin_type=True
    )
    return SerialBuild(time.perf_counter() - started, len(body), len(objects))


def git_mirror(repo: SynthRepo, bare: Path) -> int:
    """Write `repo` as the bare git repository `bare`; returns its pack size in bytes."""
    _git("init", "-q", "--bare", str(bare))
    importer = subprocess.Popen(
        ["git", "-C", str(bare), "fast-import", "--quiet"], stdin=subprocess.PIPE
    )
    assert importer.stdin is not None
    _fast_import_stream(repo, importer.stdin)
    importer.stdin.close()
    if importer.wait(GIT_TIMEOUT_S) != 0:
        raise RuntimeError(f"git fast-import failed with {importer.returncode}")
    _git("-C", str(bare), "symbolic-ref", "HEAD", f"refs/heads/{repo.default_branch}")
    _git("-C", str(bare), "repack", "-a", "-d", "-b", "-q")
    return sum(p.stat().st_size for p in (bare / "objects" / "pack").glob("*.pack"))


def git_commit_files(bare: Path, branch: str, files: dict[str, bytes], message: str) -> str:
    """One commit on `branch` of the bare repository `bare` that writes `files` (path -> bytes)
    over its tree, by plumbing (no working tree): what a one-commit `git push` leaves there.
    Returns the commit's id."""
    env = {
        **os.environ,
        "GIT_INDEX_FILE": str(bare / "bench-index"),
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "bench@bench",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "bench@bench",
    }

    def git(*args: str, data: bytes | None = None) -> str:
        done = subprocess.run(
            ["git", "-C", str(bare), *args],
            input=data,
            capture_output=True,
            check=True,
            env=env,
            timeout=GIT_TIMEOUT_S,
        )
        return done.stdout.decode().strip()

    ref = f"refs/heads/{branch}"
    git("read-tree", ref)
    for path, content in files.items():
        blob = git("hash-object", "-w", "--stdin", data=content)
        git("update-index", "--add", "--cacheinfo", f"100644,{blob},{path}")
    commit = git("commit-tree", git("write-tree"), "-p", ref, "-m", message)
    git("update-ref", ref, commit)
    return commit


def _fast_import_stream(repo: SynthRepo, out: IO[bytes]) -> None:
    marks: dict[str, int] = {}
    for n, (oid, content) in enumerate(repo.iter_objects(), start=1):
        marks[oid] = n
        out.write(b"blob\nmark :%d\ndata %d\n" % (n, len(content)) + content + b"\n")
    commit_marks: dict[str, int] = {}
    for commit in repo.commits:
        mark = len(marks) + len(commit_marks) + 1
        commit_marks[commit["commit_id"]] = mark
        message = commit["message"].encode()
        when = int(_epoch(commit["committed_at"]))
        lines = [
            b"commit refs/heads/" + commit["branch"].encode(),
            b"mark :%d" % mark,
            b"committer %s <%s@bench> %d +0000" % ((commit["author"].encode(),) * 2 + (when,)),
            b"data %d" % len(message),
            message,
        ]
        for field, verb in (("parent_commit_id", b"from"), ("parent2_commit_id", b"merge")):
            if commit[field]:
                lines.append(b"%s :%d" % (verb, commit_marks[commit[field]]))
        lines.append(b"deleteall")
        manifest = repo.snapshots[commit["snapshot_id"]]["manifest"]
        lines += [
            b"M 100644 :%d %s" % (marks[oid], path.encode())
            for path, oid in sorted(manifest.items())
        ]
        out.write(b"\n".join(lines) + b"\n\n")


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


class GitDaemon:
    """`git daemon` serving every repository under `base` on a free loopback port."""

    def __init__(self, base: Path, log: Path) -> None:
        self.base = base
        self.port = free_port()
        self._log = log.open("ab")
        self._process: subprocess.Popen[bytes] | None = None

    def url(self, name: str) -> str:
        return f"git://127.0.0.1:{self.port}/{name}"

    def __enter__(self) -> GitDaemon:
        self._process = subprocess.Popen(
            [
                "git",
                "daemon",
                "--reuseaddr",
                "--export-all",
                "--listen=127.0.0.1",
                f"--port={self.port}",
                f"--base-path={self.base}",
                str(self.base),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        if not wait_for_port("127.0.0.1", self.port, timeout=15):
            self.__exit__()
            raise RuntimeError("git daemon did not start listening within 15 s")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._log.close()


def _git(*args: str) -> None:
    subprocess.run(["git", *args], check=True, timeout=GIT_TIMEOUT_S)
