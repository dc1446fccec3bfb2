"""`musehub worker`: the Temporal worker as a deployment runs it (`worker.py`)."""

from __future__ import annotations

import argparse
import asyncio

from musehub.cli.flags import settings_with_flags
from musehub.metrics_dir import metrics_dir

FLAGS = {
    "task_queue": "MUSEHUB_TEMPORAL_TASK_QUEUE",
    "prebuild_task_queue": "MUSEHUB_TEMPORAL_PREBUILD_TASK_QUEUE",
    "max_concurrent_activities": "MUSEHUB_TEMPORAL_WORKER_MAX_CONCURRENT_ACTIVITIES",
    "max_concurrent_builds": "MUSEHUB_TEMPORAL_WORKER_MAX_CONCURRENT_BUILDS",
    "metrics_host": "MUSEHUB_TEMPORAL_WORKER_METRICS_HOST",
    "metrics_port": "MUSEHUB_TEMPORAL_WORKER_METRICS_PORT",
}


def run_worker(args: argparse.Namespace) -> int:
    settings = settings_with_flags(args, FLAGS)
    # One process: its metrics stay in memory, whatever folder the environment names.
    with metrics_dir(processes=1):
        import worker

        asyncio.run(worker.main(settings))
    return 0
