"""`musehub gc [--dry-run]`: run garbage collection now by triggering the GC schedule (so the
run shows in its history, and never overlaps a scheduled one), or print what would go."""

from __future__ import annotations

import argparse
import asyncio
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import FailureError
from temporalio.service import RPCError, RPCStatusCode

from musehub.cli.temporal_client import connect_or_explain, run_then_exit
from musehub.client.progress import format_bytes
from musehub.contract import GcResult
from musehub.db.engine import create_engine
from musehub.services import gc
from musehub.services.reconcile import repos_missing_packs
from musehub.services.schedules import gc_result, trigger_gc
from musehub.settings import Settings, load_settings
from musehub.storage import build_storage

LABEL = 36  # width of the dry run's first column


def run_gc(args: argparse.Namespace) -> int:
    settings = load_settings()
    if args.dry_run:
        asyncio.run(_print_dry_run(settings))
        return 0
    run_then_exit("gc", lambda: _run_now(settings))


def describe_result(result: GcResult) -> str:
    return (
        f"{result.rows_deleted} expired rows and {result.objects_deleted} pack objects "
        f"deleted, {result.orphans_swept} orphan packs and {result.uploads_swept} stale "
        f"uploads swept, {format_bytes(result.bytes_freed)} freed; {result.packs_verified} packs "
        f"verified against storage, {result.lost_packs} lost; {result.tips_reconciled} "
        f"tips reconciled in {result.repos_reconciled} repos ({result.elapsed_seconds:.1f}s)"
    )


async def _run_now(settings: Settings) -> None:
    client = await connect_or_explain(settings)
    try:
        workflow_id = await trigger_gc(client, settings)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise RuntimeError(
                f"no schedule {settings.gc.schedule_id}: start a worker (it creates "
                "it) or run `musehub schedules apply`"
            ) from None
        raise
    print(
        f"gc run {workflow_id} started on task queue {settings.temporal.task_queue}; waiting "
        "for a worker to finish it (Ctrl-C stops waiting, not the run)",
        flush=True,
    )
    try:
        result = await gc_result(client, workflow_id)
    except WorkflowFailureError as exc:
        cause = exc.cause.message if isinstance(exc.cause, FailureError) else str(exc)
        raise RuntimeError(
            f"gc run {workflow_id} failed: {cause} (details in the Temporal UI; "
            "the next run picks up what this one left)"
        ) from None
    print(f"gc run {workflow_id}: {describe_result(result)}")


async def _print_dry_run(settings: Settings) -> None:
    grace = settings.orphan_grace
    engine = create_engine(settings.database_url, pool_size=1)
    storage = build_storage(settings)
    try:
        async with AsyncSession(engine) as session:
            expired = await gc.preview_expired(session)
            orphans = await gc.sweep_orphan_mpacks(session, storage, grace=grace, dry_run=True)
            uploads = await gc.sweep_stale_uploads(storage, grace=grace, dry_run=True)
            repos = (
                await repos_missing_packs(session, limit=settings.gc.reconcile_max_repos)
                if settings.gc.reconcile
                else []
            )
    finally:
        await storage.aclose()
        await engine.dispose()
    older = f"older than {_duration(grace)}"
    print("dry run: nothing is deleted or started")
    print(f"{'expired cache rows':<{LABEL}}{expired.rows}")
    _print_kind("pack objects to delete", expired.objects, expired.bytes, expired.examples)
    _print_kind(f"orphan packs {older}", orphans.deleted, orphans.bytes_freed, orphans.examples)
    _print_kind(f"stale uploads {older}", uploads.deleted, uploads.bytes_freed, uploads.examples)
    if not settings.gc.reconcile:
        print(f"{'repos to reconcile':<{LABEL}}- (reconcile is off: MUSEHUB_GC_RECONCILE)")
        return
    print(f"{'repos to reconcile':<{LABEL}}{len(repos)}")
    for repo in repos:
        print(f"  {repo.name} ({repo.missing} tips or head sets without a pack)")


def _print_kind(label: str, count: int, size: int, examples: list[str]) -> None:
    print(f"{label:<{LABEL}}{count} ({format_bytes(size)})")
    for key in examples:
        print(f"  {key}")
    if count > len(examples):
        print(f"  ... and {count - len(examples)} more")


def _duration(span: timedelta) -> str:
    hours = span.total_seconds() / 3600
    return f"{hours:g} h" if hours >= 1 else f"{hours * 60:g} min"
