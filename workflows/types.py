"""What the workflows and activities exchange: one dataclass in, one out, ids and storage keys
only (never blob bytes: Temporal refuses payloads over 2 MB). No side effects on import."""

from __future__ import annotations

from dataclasses import dataclass

PREBUILD_WORKFLOW_ID_PREFIX = "prebuild-fetch-mpacks/"


def prebuild_workflow_id(repo_id: str) -> str:
    return PREBUILD_WORKFLOW_ID_PREFIX + repo_id


@dataclass
class PrebuildRequest:
    """Build packs for these branch tips (every tip of the repo at push time)."""

    tip_commit_ids: list[str]
    force: bool = False


@dataclass
class PrebuildInput:
    repo_id: str
    repo_name: str = ""
    # Work carried over by continue-as-new; a fresh run gets its work by signal.
    pending: PrebuildRequest | None = None
    # How long a run waits for more pushes before it completes (a burst coalesces into one run).
    idle_seconds: float = 120.0
    # A build step whose worker has not heartbeated (or, on a dead worker's queue, not started)
    # for this long is given up, and the build starts over on another worker.
    worker_loss_seconds: float = 30.0


@dataclass
class PrebuildStatus:
    repo_id: str
    current_target: list[str] | None = None
    done: int = 0
    pending: int = 0
    hits: int = 0
    built: int = 0
    skipped: int = 0
    last_error: str | None = None


@dataclass
class PrebuildResult:
    repo_id: str
    targets: int
    hits: int
    built: int
    skipped: int
    elapsed_seconds: float


@dataclass
class CheckCacheInput:
    repo_id: str
    want: list[str]
    force: bool = False


@dataclass
class CheckCacheResult:
    # "fresh": a live entry exists; "build": go on; "gone": a tip is no longer in the repo.
    verdict: str
    reason: str = ""


@dataclass
class ClaimWorkerInput:
    repo_id: str


@dataclass
class ClaimWorkerResult:
    """The task queue only the claiming worker polls: the build steps that hand a local file to
    each other all run there."""

    task_queue: str


@dataclass
class BuildStepInput:
    repo_id: str
    want: list[str]
    build_id: str


@dataclass
class LoadBlobsResult:
    objects: int
    bytes: int
    reused: int


@dataclass
class AssembleResult:
    size: int
    sha256: str
    commits: int
    objects: int


@dataclass
class UploadInput:
    repo_id: str
    build_id: str
    size: int
    sha256: str


@dataclass
class UploadResult:
    mpack_id: str


@dataclass
class RecordCacheInput:
    repo_id: str
    want: list[str]
    mpack_id: str
    size: int
    sha256: str
    commits: int
    objects: int


@dataclass
class RecordCacheResult:
    cache_id: str


@dataclass
class DiscardBuildInput:
    build_id: str


@dataclass
class DiscardBuildResult:
    removed: bool
