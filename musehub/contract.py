"""The contract the workflows and the activities share, and what the API and CLI use to start
and query the workflows: their names, signals and queries, the dataclasses they exchange (one
in, one out; ids and storage keys only, never blob bytes: Temporal refuses payloads over 2 MB),
and the error types an activity raises for a fact no retry changes.

Both sides import this module, so it imports nothing of either, and nothing with side effects:
workflow code loads it in Temporal's sandbox. Names here are in workflow histories and in the GC
schedule: renaming one breaks running workflows and the schedule."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Final, Literal

# -- names --------------------------------------------------------------------------------------

PREBUILD_WORKFLOW: Final = "PrebuildFetchMPacks"
GC_WORKFLOW: Final = "GarbageCollectFetchMPacks"
COMPACT_WORKFLOW: Final = "CompactMPackChain"

# A push sends its tips; `musehub rebuild` sends the current tips (usually with force).
TIPS_PUSHED_SIGNAL: Final = "tips_pushed"
REBUILD_SIGNAL: Final = "rebuild"
PrebuildSignal = Literal["tips_pushed", "rebuild"]
STATUS_QUERY: Final = "status"

PREBUILD_WORKFLOW_ID_PREFIX: Final = "prebuild-fetch-mpacks/"


def prebuild_workflow_id(repo_id: str) -> str:
    """One prebuild workflow id per repo: pushes signal-with-start it."""
    return PREBUILD_WORKFLOW_ID_PREFIX + repo_id


def compaction_workflow_id(cache_id: str) -> str:
    """One compaction at a time per chain (per cache row)."""
    return "compact-mpack-chain/" + cache_id


# -- error types (ApplicationError.type) ----------------------------------------------------------

# A blob the pack needs is not in storage, or its bytes do not hash to its id.
BLOB_MISSING: Final = "BlobMissing"
# A tip is no longer in the repository.
TIP_GONE: Final = "TipGone"
# A newer push replaced the tips before their pack was built.
SUPERSEDED: Final = "Superseded"
# The worker no longer has the build's staging folder: the build starts over.
STAGING_LOST: Final = "StagingLost"
# GC collected the uploaded pack before its row was recorded: the build starts over.
PACK_GONE: Final = "PackGone"
BAD_BUILD_ID: Final = "BadBuildId"
# A GC run whose steps failed after their retries (the next run picks up what they left).
GC_INCOMPLETE: Final = "GcIncomplete"
ErrorType = Literal[
    "BlobMissing", "TipGone", "Superseded", "StagingLost", "PackGone", "BadBuildId", "GcIncomplete"
]

# -- the prebuild ---------------------------------------------------------------------------------

# The longest a build step (load, assemble, upload) may run; a staging folder is abandoned once
# no step can still come back for it.
BUILD_STEP_TIMEOUT: Final = timedelta(minutes=30)


def build_targets(tips: list[str]) -> list[list[str]]:
    """The want sets the prebuild keeps packed for these branch tips: the whole head set first
    (what `muse clone` asks for), then one per tip."""
    distinct = sorted(set(tips))
    targets = [[tip] for tip in distinct]
    return [distinct, *targets] if len(distinct) > 1 else targets


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


# "fresh": a live entry exists; "build": go on; "gone": a tip is no longer in the repo;
# "built": a small top-up was built and recorded by the check itself (`check_or_append`).
CacheVerdict = Literal["fresh", "build", "gone", "built"]


@dataclass
class CheckCacheResult:
    verdict: CacheVerdict
    reason: str = ""
    # With "build": the queue only the checking worker polls, where the build steps run.
    task_queue: str = ""
    # With "built": the row recorded, and whether its chain is due for compaction.
    cache_id: str = ""
    compact: bool = False


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
    # A forced rebuild: a new base, not a top-up of a live chain.
    fresh_base: bool = False


@dataclass
class LoadBlobsResult:
    """The blobs staged on the worker (the large ones; see musehub/services/staging.py)."""

    objects: int
    bytes: int
    reused: int


@dataclass
class AssembleResult:
    size: int
    sha256: str
    commits: int
    objects: int
    # [count, start, end] of each section's records: the pack can be a part of chains.
    sections: list[list[int]] = field(default_factory=list)
    # The want set whose chain this pack is a top-up of; empty: a base (all of `want`).
    base_want: list[str] = field(default_factory=list)


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
    sections: list[list[int]] = field(default_factory=list)  # as AssembleResult's
    base_want: list[str] = field(default_factory=list)  # as AssembleResult's


@dataclass
class RecordCacheResult:
    cache_id: str
    # The recorded chain has grown past its bound: compact it (CompactMPackChain).
    compact: bool = False


@dataclass
class ZstdCopiesInput:
    """The want set whose recorded packs get their zstd copies (after the record step)."""

    repo_id: str
    want: list[str]


@dataclass
class ZstdCopiesResult:
    made: int = 0


@dataclass
class CompactChainInput:
    repo_id: str
    want: list[str]


@dataclass
class CompactChainResult:
    parts_before: int = 0
    parts_after: int = 0
    # Bytes of the new base, written by joining stored parts (no blob read).
    joined_bytes: int = 0


@dataclass
class DiscardBuildInput:
    build_id: str


@dataclass
class DiscardBuildResult:
    removed: bool


# -- garbage collection ---------------------------------------------------------------------------


@dataclass
class GcInput:
    """One GC run: what the schedule starts, built from the `MUSEHUB_GC_*` settings."""

    batch_size: int = 500
    # Batches of expired rows one run deletes at most; the next run goes on from there.
    max_batches: int = 100
    orphan_grace_seconds: float = 24 * 3600.0
    # Repos whose missing packs one run starts building at most; 0 turns reconcile off.
    reconcile_max_repos: int = 100
    # Pack objects of live rows one run checks against storage at most; 0 turns the check off.
    verify_max_packs: int = 1000


@dataclass
class GcResult:
    rows_deleted: int = 0
    objects_deleted: int = 0
    bytes_freed: int = 0
    orphans_swept: int = 0
    uploads_swept: int = 0
    tips_reconciled: int = 0
    repos_reconciled: int = 0
    # Pack objects of live rows checked against storage, and those storage lost (their rows
    # were dropped).
    packs_verified: int = 0
    lost_packs: int = 0
    elapsed_seconds: float = 0.0
    # Steps that failed after their retries (the next run picks up what they left).
    errors: list[str] = field(default_factory=list)


@dataclass
class DeleteExpiredRowsInput:
    batch_size: int


@dataclass
class DeleteExpiredRowsResult:
    rows_deleted: int
    # Storage keys the deleted rows named, each once: the objects to delete next.
    mpack_ids: list[str]


@dataclass
class DeleteMPacksInput:
    mpack_ids: list[str]


@dataclass
class DeleteMPacksResult:
    deleted: int
    bytes_freed: int


@dataclass
class SweepInput:
    grace_seconds: float


@dataclass
class SweepResult:
    scanned: int
    deleted: int
    bytes_freed: int


@dataclass
class VerifyPacksInput:
    max_packs: int


@dataclass
class VerifyPacksResult:
    checked: int
    # Packs storage no longer held (or held with another size): their rows were dropped.
    lost: int


@dataclass
class ReconcileInput:
    max_repos: int


@dataclass
class ReconcileResult:
    repos: int
    tips: int
