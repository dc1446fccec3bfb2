"""`musehub schedules apply`: create the Temporal Schedules the hub runs on (garbage collection),
or bring them up to date with the settings. Every worker does this at start too."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from temporalio.client import Client

from musehub.services.schedules import apply_gc_schedule
from musehub.settings import Settings, load_settings
from musehub.temporal import connect, temporal_address


def register(commands: Any) -> None:
    schedules = commands.add_parser("schedules", help="manage the hub's Temporal Schedules")
    actions = schedules.add_subparsers(dest="schedules_command", required=True, metavar="ACTION")
    apply = actions.add_parser("apply", help="create or update the GC schedule from the settings")
    apply.set_defaults(handler=run_apply)


async def temporal_client(settings: Settings) -> Client:
    try:
        return await asyncio.wait_for(connect(settings), 10)
    except Exception as exc:
        where = temporal_address(settings)
        raise RuntimeError(f"cannot reach Temporal at {where}: {exc}") from None


async def _apply(settings: Settings) -> bool:
    applied = await apply_gc_schedule(await temporal_client(settings), settings)
    return applied.created


def run_apply(args: argparse.Namespace) -> int:
    settings = load_settings()
    created = asyncio.run(_apply(settings))
    print(f"schedule {settings.gc.schedule_id} {'created' if created else 'updated'}: "
          f"GarbageCollectFetchMPacks every {settings.gc.interval_minutes:g} min on task queue "
          f"{settings.temporal.task_queue} (overlap: skip)")
    return 0
