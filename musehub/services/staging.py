"""A worker's staging folder: where the prebuild's build steps (load, assemble, upload) leave
each other the large blobs and the assembled pack. They all run on the worker that claimed the
build (its own task queue), so local files are enough, and a retried step finds what an earlier
attempt left instead of reading it again.

Layout: `<root>/<worker folder>/<build id>/objects/<object id>` for staged blobs and
`.../<build id>/pack.mpack` for the pack. Files appear under their final name only once complete
(written as `.partial`, then renamed), so a file that is there is whole. A successful upload or
a discard removes the build's folder; a clean shutdown removes the worker's.

A killed worker removes nothing, and no other worker will come back for its builds (they start
over elsewhere, with new ids). So each worker process holds an exclusive `flock` on the
`owner.lock` of its folder for as long as it lives: the kernel drops the lock however the process
ends (SIGKILL and OOM too), and `sweep_abandoned`, run by every worker at start and then
periodically, removes any worker folder whose lock nobody holds, whatever its age. What has no
lock (a build folder of the layout before worker folders, a claim cut short) goes by age."""

from __future__ import annotations

import asyncio
import fcntl
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from musehub.contract import BUILD_STEP_TIMEOUT
from musehub.services.blob_reads import BlobMissing, BlobReader, PackObject
from musehub.services.mpack_build import Progress
from musehub.storage import ObjectNotFound, ObjectStorage

# Blobs this large are staged on the worker before assembling, so a retried build resumes
# instead of reading them again; smaller ones cost more as files than as reads, so assemble
# reads them straight from storage (64 at a time, like the synchronous build).
STAGE_MIN_BYTES = 1024 * 1024
PACK_FILE = "pack.mpack"
# A build step writes its folder as it goes: one untouched for twice the longest a step may run
# has no step left to come back. Only for folders without an owner's lock.
STALE_STAGING_SECONDS = 2 * BUILD_STEP_TIMEOUT.total_seconds()
LOCK_FILE = "owner.lock"
# A worker folder is made under this name and renamed once its lock is held, so a sweep never
# takes a folder whose lock is not held yet for an abandoned one.
CLAIMING_PREFIX = ".claiming-"


class StagingLost(Exception):
    """A file an earlier step staged is gone (the worker lost its folder): start the build over."""


class BadBuildId(ValueError):
    """A build id that cannot name a folder."""


@dataclass(frozen=True)
class StagedBlobs:
    objects: int
    bytes: int
    # Staged by an earlier attempt of the step, so not read again.
    reused: int


class StagingArea:
    """One worker process's staging folder, and the build folders in it."""

    def __init__(self, folder: Path, storage: ObjectStorage, *, lock_fd: int | None = None) -> None:
        self.folder = folder
        self._storage = storage
        self._lock_fd = lock_fd

    @classmethod
    def claim(cls, root: Path, storage: ObjectStorage) -> StagingArea:
        """A new folder under `root` for this worker, its lock held until `release` or the end
        of the process. Blocking: run it off the event loop."""
        root.mkdir(parents=True, exist_ok=True)
        claiming = Path(tempfile.mkdtemp(prefix=CLAIMING_PREFIX, dir=root))
        # os.open's descriptors are not inherited: a child process cannot keep the lock alive.
        lock_fd = os.open(claiming / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        folder = root / f"worker-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        claiming.rename(folder)
        return cls(folder, storage, lock_fd=lock_fd)

    def release(self) -> None:
        """Remove this worker's folder (no build of this process can come back), then drop the
        lock. Blocking: run it off the event loop."""
        shutil.rmtree(self.folder, ignore_errors=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def build_folder(self, build_id: str) -> Path:
        if not build_id.replace("-", "").isalnum():
            raise BadBuildId(f"bad build id {build_id!r}")
        return self.folder / build_id

    def is_staged(self, build_id: str, obj: PackObject) -> bool:
        try:
            return self._blob_path(build_id, obj).stat().st_size == obj.size
        except FileNotFoundError:
            return False

    async def stage(
        self,
        build_id: str,
        objects: Sequence[PackObject],
        *,
        concurrency: int,
        on_progress: Progress,
    ) -> StagedBlobs:
        """Download every large blob of `objects` not staged yet, `concurrency` at a time."""
        (self.build_folder(build_id) / "objects").mkdir(parents=True, exist_ok=True)
        large = [o for o in objects if o.size >= STAGE_MIN_BYTES]
        todo = [o for o in large if not self.is_staged(build_id, o)]
        limit = asyncio.Semaphore(concurrency)
        done = len(large) - len(todo)

        async def fetch(obj: PackObject) -> None:
            nonlocal done
            async with limit:
                await self.download(build_id, obj)
            done += 1
            on_progress(done, len(large))

        await asyncio.gather(*(fetch(o) for o in todo))
        return StagedBlobs(len(large), sum(o.size for o in large), len(large) - len(todo))

    async def download(self, build_id: str, obj: PackObject) -> None:
        path = self._blob_path(build_id, obj)
        partial = path.with_name(path.name + ".partial")
        try:
            with partial.open("wb") as out:
                async for chunk in self._storage.stream(obj.storage_key):
                    out.write(chunk)
        except ObjectNotFound:
            partial.unlink(missing_ok=True)
            raise BlobMissing(f"object {obj.object_id} is missing from storage") from None
        partial.replace(path)

    def blob_reader(self, build_id: str, from_storage: BlobReader) -> BlobReader:
        """Reads the large blobs from the staging folder, the small ones with `from_storage`."""

        async def read(obj: PackObject) -> bytes:
            if obj.size < STAGE_MIN_BYTES:
                return await from_storage(obj)
            try:
                return await asyncio.to_thread(self._blob_path(build_id, obj).read_bytes)
            except FileNotFoundError:
                raise StagingLost(f"staged blob {obj.object_id} is gone") from None

        return read

    @contextmanager
    def write_pack(self, build_id: str) -> Iterator[BinaryIO]:
        """The file to assemble the pack into; it becomes the build's pack once the block ends
        without an error (and is on disk)."""
        pack = self.build_folder(build_id) / PACK_FILE
        partial = pack.with_name(PACK_FILE + ".partial")
        with partial.open("wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        partial.replace(pack)

    def staged_pack(self, build_id: str, size: int) -> Path | None:
        """The build's assembled pack, if it is here and whole."""
        pack = self.build_folder(build_id) / PACK_FILE
        try:
            return pack if pack.stat().st_size == size else None
        except FileNotFoundError:
            return None

    async def discard(self, build_id: str) -> bool:
        """Remove the build's folder; False if it was not there."""
        folder = self.build_folder(build_id)
        existed = folder.exists()
        await asyncio.to_thread(shutil.rmtree, folder, True)
        return existed

    def _blob_path(self, build_id: str, obj: PackObject) -> Path:
        return self.build_folder(build_id) / "objects" / obj.object_id


def sweep_abandoned(root: Path) -> int:
    """Remove the staging folders under `root` no live worker owns: a worker folder whose lock
    nobody holds at once, anything without a lock once nothing was written in it for
    STALE_STAGING_SECONDS. Blocking: run it off the event loop. Returns how many were removed."""
    if not root.is_dir():
        return 0
    removed = 0
    for folder in root.iterdir():
        if folder.is_dir() and _abandoned(folder):
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


def _abandoned(folder: Path) -> bool:
    lock = folder / LOCK_FILE
    if folder.name.startswith(CLAIMING_PREFIX) or not lock.exists():
        return time.time() - _last_written(folder) > STALE_STAGING_SECONDS
    return not _lock_held(lock)


def _lock_held(lock: Path) -> bool:
    """Whether a process holds the lock. Taking it for a moment is safe: a worker locks only the
    folder it has just made, never an existing one."""
    try:
        lock_fd = os.open(lock, os.O_RDWR)
    except FileNotFoundError:  # its folder was removed meanwhile
        return False
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(lock_fd)
    return False


def _last_written(folder: Path) -> float:
    try:
        return max(p.stat().st_mtime for p in [folder, *folder.rglob("*")])
    except OSError:  # removed meanwhile: by its own build, which is done with it
        return time.time()
