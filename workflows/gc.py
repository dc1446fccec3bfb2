"""`GarbageCollectFetchMPacks`: started by the `musehub-gc` Temporal Schedule (overlap: skip).
Deletes expired cache rows and then the pack objects no row names any more, drops the rows of
packs storage lost, sweeps orphaned packs and stale uploads, and starts the prebuild of tips
without a pack. Deterministic code only: every effect is an activity. Why the order is
crash-safe: `musehub.services.gc`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.gc import GcActivities
    from musehub.contract import (
        GC_INCOMPLETE,
        GC_WORKFLOW,
        DeleteExpiredRowsInput,
        DeleteMPacksInput,
        GcInput,
        GcResult,
        ReconcileInput,
        SweepInput,
        SweepResult,
        VerifyPacksInput,
    )

DB_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=5,
)
# A storage delete that fails is retried with the same keys; when it fails for good the objects
# are orphans, and the sweep of a later run deletes them.
STORAGE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2), maximum_interval=timedelta(minutes=1), maximum_attempts=6
)
QUICK_STEP = timedelta(minutes=1)
LONG_STEP = timedelta(minutes=30)
HEARTBEAT = timedelta(minutes=1)
# Runs started before the verify step existed replay without it (a deploy can land mid-run).
# Once no such run can be in flight, `workflow.deprecate_patch` it, then drop the check.
VERIFY_PATCH = "gc-verify-live-packs"


@workflow.defn(name=GC_WORKFLOW)
class GarbageCollectFetchMPacks:
    @workflow.run
    async def run(self, params: GcInput) -> GcResult:
        started = workflow.now()
        result = GcResult()
        await self._collect_expired(params, result)
        if workflow.patched(VERIFY_PATCH) and params.verify_max_packs > 0:
            await self._verify(params, result)
        await self._sweep(params, result)
        if params.reconcile_max_repos > 0:
            await self._reconcile(params, result)
        result.elapsed_seconds = (workflow.now() - started).total_seconds()
        workflow.logger.info(
            "gc done rows=%d objects=%d bytes_freed=%d verified=%d lost=%d orphans=%d uploads=%d "
            "tips_reconciled=%d repos_reconciled=%d errors=%d elapsed=%.1fs",
            result.rows_deleted,
            result.objects_deleted,
            result.bytes_freed,
            result.packs_verified,
            result.lost_packs,
            result.orphans_swept,
            result.uploads_swept,
            result.tips_reconciled,
            result.repos_reconciled,
            len(result.errors),
            result.elapsed_seconds,
        )
        if result.errors:
            # Failed, so the schedule's run history shows it; the log line above has the counts.
            raise ApplicationError(
                "gc finished with errors: " + "; ".join(result.errors),
                result,
                type=GC_INCOMPLETE,
                non_retryable=True,
            )
        return result

    async def _collect_expired(self, params: GcInput, result: GcResult) -> None:
        for _ in range(params.max_batches):
            try:
                expired = await workflow.execute_activity_method(
                    GcActivities.delete_expired_rows,
                    DeleteExpiredRowsInput(params.batch_size),
                    start_to_close_timeout=QUICK_STEP,
                    retry_policy=DB_RETRY,
                )
            except ActivityError as err:
                result.errors.append(f"delete expired rows: {_describe(err)}")
                return
            result.rows_deleted += expired.rows_deleted
            if expired.mpack_ids:
                await self._delete_objects(expired.mpack_ids, result)
            if expired.rows_deleted < params.batch_size:
                return

    async def _delete_objects(self, mpack_ids: list[str], result: GcResult) -> None:
        try:
            deleted = await workflow.execute_activity_method(
                GcActivities.delete_unnamed_mpacks,
                DeleteMPacksInput(mpack_ids),
                start_to_close_timeout=LONG_STEP,
                heartbeat_timeout=HEARTBEAT,
                retry_policy=STORAGE_RETRY,
            )
        except ActivityError as err:
            result.errors.append(f"delete {len(mpack_ids)} pack objects: {_describe(err)}")
            return
        result.objects_deleted += deleted.deleted
        result.bytes_freed += deleted.bytes_freed

    async def _verify(self, params: GcInput, result: GcResult) -> None:
        """Before reconcile, so the tips whose pack storage lost are built again this run."""
        try:
            verified = await workflow.execute_activity_method(
                GcActivities.verify_live_packs,
                VerifyPacksInput(params.verify_max_packs),
                start_to_close_timeout=LONG_STEP,
                heartbeat_timeout=HEARTBEAT,
                retry_policy=STORAGE_RETRY,
            )
        except ActivityError as err:
            result.errors.append(f"verify live packs: {_describe(err)}")
            return
        result.packs_verified += verified.checked
        result.lost_packs += verified.lost

    async def _sweep(self, params: GcInput, result: GcResult) -> None:
        sweep = SweepInput(params.orphan_grace_seconds)
        orphans = await self._sweep_step(GcActivities.sweep_orphans, sweep, "orphan packs", result)
        result.orphans_swept += orphans.deleted
        uploads = await self._sweep_step(GcActivities.sweep_uploads, sweep, "stale uploads", result)
        result.uploads_swept += uploads.deleted
        result.bytes_freed += orphans.bytes_freed + uploads.bytes_freed

    async def _sweep_step(
        self,
        step: Callable[[GcActivities, SweepInput], Awaitable[SweepResult]],
        sweep: SweepInput,
        what: str,
        result: GcResult,
    ) -> SweepResult:
        try:
            return await workflow.execute_activity_method(
                step,
                sweep,
                start_to_close_timeout=LONG_STEP,
                heartbeat_timeout=HEARTBEAT,
                retry_policy=STORAGE_RETRY,
            )
        except ActivityError as err:
            result.errors.append(f"sweep {what}: {_describe(err)}")
            return SweepResult(0, 0, 0)

    async def _reconcile(self, params: GcInput, result: GcResult) -> None:
        try:
            reconciled = await workflow.execute_activity_method(
                GcActivities.reconcile,
                ReconcileInput(params.reconcile_max_repos),
                start_to_close_timeout=timedelta(minutes=5),
                retry_policy=DB_RETRY,
            )
        except ActivityError as err:
            result.errors.append(f"reconcile: {_describe(err)}")
            return
        result.repos_reconciled = reconciled.repos
        result.tips_reconciled = reconciled.tips


def _describe(err: ActivityError) -> str:
    cause = err.cause
    return str(cause.message if cause is not None and hasattr(cause, "message") else err)
