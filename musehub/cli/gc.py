"""`musehub gc [--dry-run]`: run garbage collection now by triggering the GC schedule (so the
run shows in its history, and never overlaps a scheduled one), or print what would go."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.service import RPCError, RPCStatusCode

from musehub.cli.schedules import temporal_client
from musehub.client.progress import format_bytes
from musehub.db.engine import create_engine
from musehub.services import gc
from musehub.services.reconcile import repos_missing_packs
from musehub.services.schedules import run_gc_now
from musehub.settings import Settings, load_settings
from musehub.storage import build_storage
from workflows.types import GcResult


def register(commands: Any) -> None:
    parser = commands.add_parser("gc", help="garbage-collect expired prebuilt packs now")
    parser.add_argument("--dry-run", action="store_true",
                        help="print what would be deleted and reconciled; change nothing")
    parser.set_defaults(handler=run_gc)


def run_gc(args: argparse.Namespace) -> int:
    settings = load_settings()
    if args.dry_run:
        asyncio.run(_print_dry_run(settings))
        return 0
    workflow_id, result = asyncio.run(_run_now(settings))
    print(f"gc run {workflow_id}: {describe_result(result)}")
    return 0


def describe_result(result: GcResult) -> str:
    return (f"{result.rows_deleted} expired rows and {result.objects_deleted} pack objects "
            f"deleted, {result.orphans_swept} orphan packs and {result.uploads_swept} stale "
            f"uploads swept, {format_bytes(result.bytes_freed)} freed; {result.tips_reconciled} "
            f"tips reconciled in {result.repos_reconciled} repos ({result.elapsed_seconds:.1f}s)")


async def _run_now(settings: Settings) -> tuple[str, GcResult]:
    client = await temporal_client(settings)
    try:
        return await run_gc_now(client, settings)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise RuntimeError(f"no schedule {settings.gc.schedule_id}: start a worker (it creates "
                               "it) or run `musehub schedules apply`") from None
        raise


async def _print_dry_run(settings: Settings) -> None:
    grace = settings.orphan_grace
    engine = create_engine(settings.database_url, pool_size=1)
    storage = build_storage(settings)
    try:
        async with AsyncSession(engine) as session:
            expired = await gc.preview_expired(session)
            orphans = await gc.sweep_orphan_mpacks(session, storage, grace=grace, dry_run=True)
            uploads = await gc.sweep_stale_uploads(storage, grace=grace, dry_run=True)
            repos = await repos_missing_packs(session, limit=settings.gc.reconcile_max_repos)
    finally:
        await storage.aclose()
        await engine.dispose()
    print("dry run: nothing is deleted or started")
    print(f"expired cache rows      {expired.rows}")
    _print_kind("pack objects to delete", expired.objects, expired.bytes, expired.examples)
    _print_kind(f"orphan packs (> {grace})", orphans.deleted, orphans.bytes_freed, orphans.examples)
    _print_kind(f"stale uploads (> {grace})", uploads.deleted, uploads.bytes_freed,
                uploads.examples)
    reconcile = "" if settings.gc.reconcile else " (reconcile is off: MUSEHUB_GC_RECONCILE)"
    print(f"repos to reconcile      {len(repos)}{reconcile}")
    for repo in repos:
        print(f"  {repo.name} ({repo.missing} tips or head sets without a pack)")


def _print_kind(label: str, count: int, size: int, examples: list[str]) -> None:
    print(f"{label:<24}{count} ({format_bytes(size)})")
    for key in examples:
        print(f"  {key}")
    if count > len(examples):
        print(f"  ... and {count - len(examples)} more")
