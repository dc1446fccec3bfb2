"""`musehub schedules apply`: create the Temporal Schedules the hub runs on (garbage collection),
or bring them up to date with the settings. Every worker does this at start too."""

from __future__ import annotations

import argparse

from musehub.cli.temporal_client import connect_or_explain, run_then_exit
from musehub.contract import GC_WORKFLOW
from musehub.services.schedules import apply_gc_schedule
from musehub.settings import load_settings


def run_apply(args: argparse.Namespace) -> int:
    settings = load_settings()

    async def apply() -> None:
        applied = await apply_gc_schedule(await connect_or_explain(settings), settings)
        print(
            f"schedule {applied.schedule_id} {'created' if applied.created else 'updated'}: "
            f"{GC_WORKFLOW} every {settings.gc.interval_minutes:g} min on task "
            f"queue {settings.temporal.task_queue} (overlap: skip)"
        )

    run_then_exit("schedules apply", apply)
