"""The garbage-collection steps as activities: the only place the GC workflow touches the
database, object storage and (for reconcile) Temporal. The deletion order and why it is
crash-safe are in `musehub.services.gc`."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client

from activities.common import Heartbeat
from musehub.contract import (
    DeleteExpiredRowsInput,
    DeleteExpiredRowsResult,
    DeleteMPacksInput,
    DeleteMPacksResult,
    ReconcileInput,
    ReconcileResult,
    SweepInput,
    SweepResult,
    VerifyPacksInput,
    VerifyPacksResult,
)
from musehub.metrics import GC_DELETED
from musehub.services import gc
from musehub.services.mpack_cache import EXPIRY_SLACK
from musehub.services.reconcile import reconcile_prebuilds
from musehub.settings import Settings
from musehub.storage import ObjectStorage


class GcActivities:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        storage: ObjectStorage,
        settings: Settings,
        temporal: Client,
    ) -> None:
        self._sessions = sessions
        self._storage = storage
        self._settings = settings
        self._temporal = temporal

    @activity.defn(name="delete_expired_fetch_mpack_rows")
    async def delete_expired_rows(self, batch: DeleteExpiredRowsInput) -> DeleteExpiredRowsResult:
        async with self._sessions() as session:
            expired = await gc.delete_expired_rows(session, limit=batch.batch_size)
        GC_DELETED.labels(kind="rows").inc(expired.rows_deleted)
        return DeleteExpiredRowsResult(expired.rows_deleted, expired.mpack_ids)

    @activity.defn(name="delete_unnamed_fetch_mpacks")
    async def delete_unnamed_mpacks(self, packs: DeleteMPacksInput) -> DeleteMPacksResult:
        """Idempotent: a retry skips the objects an earlier attempt already deleted."""
        deleted = freed = 0
        async with self._sessions() as session, Heartbeat() as heartbeat:
            for done, key in enumerate(packs.mpack_ids, 1):
                size = await gc.delete_if_unnamed(session, self._storage, key)
                if size is not None:
                    deleted, freed = deleted + 1, freed + size
                heartbeat(done, len(packs.mpack_ids))
        GC_DELETED.labels(kind="objects").inc(deleted)
        GC_DELETED.labels(kind="bytes").inc(freed)
        return DeleteMPacksResult(deleted, freed)

    @activity.defn(name="verify_live_fetch_mpacks")
    async def verify_live_packs(self, verify: VerifyPacksInput) -> VerifyPacksResult:
        """Drops the rows of packs storage lost; a retry checks another window, which is as
        good (each run checks a random one)."""
        async with self._sessions() as session, Heartbeat() as heartbeat:
            outcome = await gc.verify_live_packs(
                session,
                self._storage,
                max_packs=verify.max_packs,
                on_progress=lambda checked: heartbeat(checked, verify.max_packs),
            )
        return VerifyPacksResult(outcome.checked, outcome.lost)

    @activity.defn(name="sweep_orphan_fetch_mpacks")
    async def sweep_orphans(self, sweep: SweepInput) -> SweepResult:
        async with self._sessions() as session, Heartbeat() as heartbeat:
            outcome = await gc.sweep_orphan_mpacks(
                session,
                self._storage,
                grace=self._grace(sweep),
                on_progress=lambda scanned: heartbeat(scanned, 0),
            )
        GC_DELETED.labels(kind="orphans").inc(outcome.deleted)
        return SweepResult(outcome.scanned, outcome.deleted, outcome.bytes_freed)

    @activity.defn(name="sweep_stale_uploads")
    async def sweep_uploads(self, sweep: SweepInput) -> SweepResult:
        async with Heartbeat() as heartbeat:
            outcome = await gc.sweep_stale_uploads(
                self._storage,
                grace=self._grace(sweep),
                on_progress=lambda scanned: heartbeat(scanned, 0),
            )
        GC_DELETED.labels(kind="uploads").inc(outcome.deleted)
        return SweepResult(outcome.scanned, outcome.deleted, outcome.bytes_freed)

    @activity.defn(name="reconcile_prebuilds")
    async def reconcile(self, limits: ReconcileInput) -> ReconcileResult:
        async with self._sessions() as session:
            outcome = await reconcile_prebuilds(
                session, self._temporal, self._settings, limit=limits.max_repos
            )
        return ReconcileResult(outcome.repos, outcome.tips)

    def _grace(self, sweep: SweepInput) -> timedelta:
        """Never shorter than a presigned URL lives, whatever an old schedule's input says."""
        floor = self._settings.presign_ttl + EXPIRY_SLACK
        return max(timedelta(seconds=sweep.grace_seconds), floor)
