"""`PrebuildFetchMPacks`: one run per repo builds the clone pack of every branch tip, and of the
whole head set, right after a push. Pushes signal-with-start it, so a burst of pushes coalesces
into one run that builds the newest tips. Deterministic code only: every effect is an activity."""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    TimeoutError,
    WorkflowAlreadyStartedError,
)
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities.prebuild import PrebuildActivities
    from musehub.contract import (
        BLOB_MISSING,
        BUILD_STEP_TIMEOUT,
        PACK_GONE,
        PREBUILD_WORKFLOW,
        REBUILD_SIGNAL,
        STAGING_LOST,
        STATUS_QUERY,
        SUPERSEDED,
        TIP_GONE,
        TIPS_PUSHED_SIGNAL,
        BuildStepInput,
        CheckCacheInput,
        ClaimWorkerInput,
        CompactChainInput,
        DiscardBuildInput,
        PrebuildInput,
        PrebuildRequest,
        PrebuildResult,
        PrebuildStatus,
        RecordCacheInput,
        UploadInput,
        ZstdCopiesInput,
        build_targets,
        compaction_workflow_id,
    )
    from workflows.compaction import CompactMPackChain

# workflow.patched marker: runs that recorded a chain to compact start CompactMPackChain.
CHAIN_COMPACTION_PATCH = "chain-compaction"
# workflow.patched marker: runs that check with `check_or_append` (a small top-up is built by
# the check itself), in QUICK_PARALLEL_BUILDS slots, and whose forced rebuilds make new bases.
QUICK_TOP_UP_PATCH = "quick-top-up"
# workflow.patched marker: runs whose tips start while the head set's cache check (a quick
# top-up, one short step) is still running, so a push is servable in one activity's round
# trip instead of two; only a staged build of the head set still runs alone.
PARALLEL_CHECKS_PATCH = "tips-beside-head-set-check"
# workflow.patched marker: runs that make the zstd copies of a target's packs once it is
# recorded, beside the builds (awaited only before the run ends), not on first demand.
ZSTD_COPIES_PATCH = "zstd-copies-at-prebuild"
QUICK_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=10,
)
BUILD_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=5,
    non_retryable_error_types=[BLOB_MISSING, TIP_GONE, SUPERSEDED],
)
# How often a whole build (claim a worker, load, assemble, upload) starts over after its worker
# vanished or lost its staging folder.
MAX_BUILD_ATTEMPTS = 3
# Failures that a fresh build fixes: the worker lost its staging folder, or GC collected the
# uploaded pack before its row was recorded.
RESTART_BUILD_ERRORS = (STAGING_LOST, PACK_GONE)
# Packs built at once per repo: builds wait on storage and the database as much as on CPU.
PARALLEL_BUILDS = 2
# With quick top-ups most targets are one short activity each: more of them at once.
QUICK_PARALLEL_BUILDS = 4
StepIn = TypeVar("StepIn")
StepOut = TypeVar("StepOut")


@workflow.defn(name=PREBUILD_WORKFLOW)
class PrebuildFetchMPacks:
    def __init__(self) -> None:
        self._pending: PrebuildRequest | None = None
        self._status = PrebuildStatus(repo_id="")
        # The newest request's targets not yet started, each with its force flag.
        self._todo: list[tuple[list[str], bool]] = []
        self._in_flight: list[list[str]] = []
        self._started = 0
        self._finished = 0
        self._quick = False
        self._parallel_checks = False
        # Targets whose cache check (check_or_append) is running.
        self._checking: list[list[str]] = []
        self._copies: list[asyncio.Future[Any]] = []

    @workflow.signal(name=TIPS_PUSHED_SIGNAL)
    def tips_pushed(self, request: PrebuildRequest) -> None:
        """The newest push's tips replace older pending ones; force is kept once asked."""
        force = request.force or (self._pending is not None and self._pending.force)
        self._pending = PrebuildRequest(list(request.tip_commit_ids), force)

    @workflow.signal(name=REBUILD_SIGNAL)
    def rebuild(self, request: PrebuildRequest) -> None:
        self.tips_pushed(request)

    @workflow.query(name=STATUS_QUERY)
    def status(self) -> PrebuildStatus:
        return self._status

    @workflow.run
    async def run(self, params: PrebuildInput) -> PrebuildResult:
        self._status = PrebuildStatus(repo_id=params.repo_id)
        if params.pending is not None and self._pending is None:
            self._pending = params.pending
        started = workflow.now()
        # Runs started before quick top-ups replay as they ran (no marker in their history).
        self._quick = workflow.patched(QUICK_TOP_UP_PATCH)
        self._parallel_checks = self._quick and workflow.patched(PARALLEL_CHECKS_PATCH)
        slots = QUICK_PARALLEL_BUILDS if self._quick else PARALLEL_BUILDS
        while await self._wait_for_work(params.idle_seconds):
            await asyncio.gather(*(self._build_slot(params) for _ in range(slots)))
            if workflow.info().is_continue_as_new_suggested():
                await self._copies_made()
                workflow.continue_as_new(
                    PrebuildInput(
                        params.repo_id,
                        params.repo_name,
                        self._pending,
                        params.idle_seconds,
                        params.worker_loss_seconds,
                    )
                )
        await self._copies_made()
        elapsed = (workflow.now() - started).total_seconds()
        workflow.logger.info(
            "prebuild done repo=%s tips=%d hits=%d built=%d skipped=%d elapsed=%.1fs",
            params.repo_name or params.repo_id,
            self._started,
            self._status.hits,
            self._status.built,
            self._status.skipped,
            elapsed,
        )
        return PrebuildResult(
            params.repo_id,
            self._started,
            self._status.hits,
            self._status.built,
            self._status.skipped,
            elapsed,
        )

    async def _wait_for_work(self, idle_seconds: float) -> bool:
        try:
            await workflow.wait_condition(
                lambda: self._pending is not None, timeout=timedelta(seconds=idle_seconds)
            )
        except builtins.TimeoutError:
            return self._pending is not None
        return True

    async def _build_slot(self, params: PrebuildInput) -> None:
        """One of PARALLEL_BUILDS slots: takes the next target of the newest request until none
        is left. Newer tips replace the rest of the list at once (a build already running for
        a replaced tip notices on the worker and stops: musehub/services/superseded.py), and a
        slot with nothing to do waits while another still builds, in case newer tips arrive.

        The clone's pack (the whole head set) builds on its own: every clone asks for it, and
        a second build beside it would take half its CPU on a small worker. (A quick top-up of
        it is one short step: the others start as soon as it is done.)"""
        while True:
            if self._pending is not None:
                self._take(self._pending)
                self._pending = None
            if not self._todo or self._building_head_set():
                if not self._in_flight:
                    return
                await self._until_a_build_ends_or_tips_arrive()
                continue
            want, force = self._todo.pop(0)
            self._in_flight.append(want)
            self._started += 1
            try:
                await self._prebuild(params, want, force)
            finally:
                self._in_flight.remove(want)
                self._finished += 1
                self._status.pending = len(self._todo) + len(self._in_flight)

    async def _until_a_build_ends_or_tips_arrive(self) -> None:
        finished = self._finished
        await workflow.wait_condition(
            lambda: self._pending is not None or self._finished != finished
        )

    def _building_head_set(self) -> bool:
        """The head set is being built, so the tips wait (not while its cache check runs, in
        runs with PARALLEL_CHECKS_PATCH: that check is at most a quick top-up)."""
        return any(
            len(want) > 1 and not (self._parallel_checks and want in self._checking)
            for want in self._in_flight
        )

    def _take(self, request: PrebuildRequest) -> None:
        """The head set first (what a clone asks for), then each tip; a target already being
        built for an earlier push is not started twice, unless a forced rebuild asks for a
        pack built after it."""
        self._todo = [
            (want, request.force)
            for want in build_targets(request.tip_commit_ids)
            if request.force or want not in self._in_flight
        ]
        self._status.pending = len(self._todo) + len(self._in_flight)

    async def _prebuild(self, params: PrebuildInput, want: list[str], force: bool) -> None:
        repo_id = params.repo_id
        self._status.current_target = want
        self._checking.append(want)
        try:
            check = await workflow.execute_activity_method(
                PrebuildActivities.check_or_append
                if self._quick
                else PrebuildActivities.check_cache,
                CheckCacheInput(repo_id, want, force),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=QUICK_RETRY,
            )
        finally:
            self._checking.remove(want)
        if check.verdict == "fresh":
            self._status.hits += 1
        elif check.verdict == "built":
            self._status.built += 1
            if check.compact:
                await self._start_compaction(repo_id, want, check.cache_id)
        elif check.verdict == "gone":
            workflow.logger.info(
                "prebuild skipped repo=%s want=%s: %s", repo_id, want, check.reason
            )
            self._status.skipped += 1
        recorded = check.verdict == "built"
        if check.verdict not in ("fresh", "built", "gone"):
            if self._parallel_checks and len(want) == 1:
                # A tip whose check ran beside the head set's builds after it, as before.
                await workflow.wait_condition(lambda: not self._building_head_set())
            loss = timedelta(seconds=params.worker_loss_seconds)
            # A forced rebuild makes a new base: a top-up would keep whatever the chain holds.
            recorded = await self._build(
                repo_id, want, loss, check.task_queue, force and self._quick
            )
        # A skipped build (superseded, a blob missing) recorded nothing to copy.
        if recorded and workflow.patched(ZSTD_COPIES_PATCH):
            self._copies.append(
                workflow.start_activity_method(
                    PrebuildActivities.make_zstd_copies,
                    ZstdCopiesInput(repo_id, want),
                    start_to_close_timeout=timedelta(minutes=15),
                    heartbeat_timeout=timedelta(minutes=1),
                    retry_policy=QUICK_RETRY,
                )
            )
        self._status.done += 1
        self._status.current_target = None

    async def _copies_made(self) -> None:
        """The zstd copies started: a failed one is left to the on-demand path."""
        for copy in self._copies:
            try:
                await copy
            except ActivityError as err:
                workflow.logger.warning("zstd copies not made: %s", _describe(err))
        self._copies = []

    async def _build(
        self,
        repo_id: str,
        want: list[str],
        worker_loss: timedelta,
        claimed_queue: str,
        fresh_base: bool,
    ) -> bool:
        """The worker that checked the cache builds; a build that lost its worker starts over on
        whichever worker claims it next. False: skipped, nothing recorded."""
        for attempt in range(1, MAX_BUILD_ATTEMPTS + 1):
            try:
                queue = claimed_queue
                if attempt > 1 or not queue:
                    queue = await self._claim(repo_id)
                await self._build_once(repo_id, want, worker_loss, queue, fresh_base)
                self._status.built += 1
                return True
            except ActivityError as err:
                if _error_type(err) == SUPERSEDED:
                    workflow.logger.info("prebuild superseded repo=%s want=%s", repo_id, want)
                    self._status.skipped += 1
                    return False
                if _is_business_failure(err) or attempt == MAX_BUILD_ATTEMPTS:
                    self._status.last_error = f"{want}: {_describe(err)}"
                    self._status.skipped += 1
                    workflow.logger.warning(
                        "prebuild failed repo=%s want=%s: %s",
                        repo_id,
                        want,
                        self._status.last_error,
                    )
                    return False
                workflow.logger.info("prebuild attempt %d lost its worker, starting over", attempt)
        return False  # not reached: the last attempt returns above

    async def _claim(self, repo_id: str) -> str:
        claim = await workflow.execute_activity_method(
            PrebuildActivities.claim_worker,
            ClaimWorkerInput(repo_id),
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=QUICK_RETRY,
        )
        return claim.task_queue

    async def _build_once(
        self, repo_id: str, want: list[str], worker_loss: timedelta, queue: str, fresh_base: bool
    ) -> None:
        step = BuildStepInput(repo_id, want, str(workflow.uuid4()), fresh_base)
        try:
            await _on_worker(PrebuildActivities.load_blobs, step, queue, worker_loss)
            built = await _on_worker(PrebuildActivities.assemble, step, queue, worker_loss)
            # A successful upload removes the staging folder itself: one activity fewer.
            uploaded = await _on_worker(
                PrebuildActivities.upload,
                UploadInput(repo_id, step.build_id, built.size, built.sha256),
                queue,
                worker_loss,
            )
        except ActivityError:
            await self._discard(queue, step.build_id, worker_loss)
            raise
        recorded = await workflow.execute_activity_method(
            PrebuildActivities.record_cache,
            RecordCacheInput(
                repo_id,
                want,
                uploaded.mpack_id,
                built.size,
                built.sha256,
                built.commits,
                built.objects,
                sections=built.sections,
                base_want=built.base_want,
            ),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=QUICK_RETRY,
        )
        # Histories from before chains never ask for compaction, so they replay unchanged.
        if recorded.compact and workflow.patched(CHAIN_COMPACTION_PATCH):
            await self._start_compaction(repo_id, want, recorded.cache_id)

    async def _start_compaction(self, repo_id: str, want: list[str], cache_id: str) -> None:
        """A job of its own, left running when this run ends; one per chain at a time."""
        try:
            await workflow.start_child_workflow(
                CompactMPackChain.run,
                CompactChainInput(repo_id, want),
                id=compaction_workflow_id(cache_id),
                parent_close_policy=ParentClosePolicy.ABANDON,
            )
        except WorkflowAlreadyStartedError:
            pass  # already compacting this chain

    async def _discard(self, task_queue: str, build_id: str, worker_loss: timedelta) -> None:
        try:
            await workflow.execute_activity_method(
                PrebuildActivities.discard,
                DiscardBuildInput(build_id),
                task_queue=task_queue,
                start_to_close_timeout=timedelta(seconds=30),
                schedule_to_start_timeout=worker_loss,
                retry_policy=RetryPolicy(maximum_attempts=3),
            )
        except ActivityError:
            pass  # the worker is gone, and its staging folder with it


async def _on_worker(
    step: Callable[[PrebuildActivities, StepIn], Coroutine[Any, Any, StepOut]],
    arg: StepIn,
    task_queue: str,
    worker_loss: timedelta,
) -> StepOut:
    """Run a build step on the claimed worker's own queue. A dead worker stops heartbeating and
    its queue is never polled again, so a retry there never starts: schedule-to-start fails it
    (no retry) and the build starts over on another worker."""
    return await workflow.execute_activity_method(
        step,
        arg,
        task_queue=task_queue,
        start_to_close_timeout=BUILD_STEP_TIMEOUT,
        heartbeat_timeout=worker_loss,
        schedule_to_start_timeout=worker_loss,
        retry_policy=BUILD_RETRY,
    )


def _error_type(err: ActivityError) -> str | None:
    return err.cause.type if isinstance(err.cause, ApplicationError) else None


def _is_business_failure(err: ActivityError) -> bool:
    cause = err.cause
    if isinstance(cause, ApplicationError):
        return cause.non_retryable and cause.type not in RESTART_BUILD_ERRORS
    return not isinstance(cause, TimeoutError)


def _describe(err: ActivityError) -> str:
    cause = err.cause
    return str(cause.message if cause is not None and hasattr(cause, "message") else err)
