"""Prometheus metrics: every metric the hub has is defined here. The API serves them at /metrics;
a worker serves its own on MUSEHUB_TEMPORAL_WORKER_METRICS_PORT when set (builds, queue delay
and GC happen there).

Several processes, one count. `musehub api` runs several uvicorn workers on one port, and a
scrape reaches whichever answers: with a registry each, a counter read 1, 5, 5, 1 over four
scrapes, which `rate()` takes for resets. So a command that runs several processes gives them
one folder (`PROMETHEUS_MULTIPROC_DIR`, set up before prometheus_client is imported:
`musehub/metrics_dir.py`): each process writes its values to its own mmap'd files there and
a scrape adds up every file (`exposition`). A warm answer's counts reach the files in batches
(`metric_batches.py`): a file write each cost it 2-3 % of its CPU. A gauge must say how its
processes' values combine (`multiprocess_mode`); a dead process's live gauges are dropped.
With no folder set (one process: `--workers 1`, the worker, the tests' in-process app) the
usual registry answers."""

from __future__ import annotations

import os
import re
from pathlib import Path

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.values import ValueClass

from musehub import metric_batches
from musehub.metrics_dir import VARIABLE as MULTIPROC_DIR_VARIABLE
from musehub.metrics_dir import is_running

# Warm answers take milliseconds, cold builds seconds: buckets span both.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

FETCHES = Counter("musehub_fetch_total", "POST /fetch answers by cache outcome", ["cache", "form"])
FETCH_SECONDS = Histogram(
    "musehub_fetch_seconds",
    "POST /fetch latency by cache outcome",
    ["cache"],
    buckets=LATENCY_BUCKETS,
)
BUILD_SECONDS = Histogram(
    "musehub_mpack_build_seconds",
    "time to build one fetch mpack",
    ["path"],
    buckets=LATENCY_BUCKETS,
)
BUILDS_REFUSED = Counter(
    "musehub_sync_builds_refused_total",
    "fetches answered 503 because every synchronous build slot was taken",
    ["scope"],
)
LOST_PACKS = Counter(
    "musehub_mpack_lost_total", "cache rows dropped because storage no longer held their pack"
)
BUILD_BYTES = Counter("musehub_mpack_build_bytes_total", "bytes of fetch mpacks built", ["path"])
PREBUILD_QUEUE_DELAY = Histogram(
    "musehub_prebuild_queue_delay_seconds",
    "from a prebuild step being scheduled to a worker starting it",
    buckets=LATENCY_BUCKETS,
)
GC_DELETED = Counter("musehub_gc_deleted_total", "what garbage collection removed", ["kind"])
PUSHES = Counter("musehub_push_total", "accepted pushes", ["prebuild_enqueued"])
# Live processes, summed over the live ones only: a uvicorn worker that died and was replaced
# stops counting at the next scrape.
PROCESSES = Gauge(
    "musehub_processes", "processes running, by role", ["role"], multiprocess_mode="livesum"
)
# API processes that hear every change to a repo's refs (`services/refs_changes.py`), so keep
# refs between requests; fewer than `musehub_processes{role="api"}`: some look refs up per clone.
REFS_LISTENING = Gauge(
    "musehub_refs_listening",
    "API processes that hear every change to repos' refs from the database",
    multiprocess_mode="livesum",
)

# The files of a live gauge end in the pid of the process that wrote them.
_LIVE_GAUGE_FILE = re.compile(r"gauge_live[a-z]+_(\d+)\.db")


def multiprocess_dir() -> Path | None:
    """The shared folder this process writes its values to, or None (one registry of its own).

    The folder must have been set before prometheus_client was imported, which chose then where
    values live: set later, this process's own values would be missing from every scrape."""
    folder = os.environ.get(MULTIPROC_DIR_VARIABLE)
    if not folder:
        return None
    if not getattr(ValueClass, "_multiprocess", False):
        raise RuntimeError(
            f"{MULTIPROC_DIR_VARIABLE} was set after prometheus_client was imported: "
            "set it before the process starts (musehub api does)"
        )
    return Path(folder)


def exposition() -> bytes:
    """What /metrics answers: every process's values added up, or this process's own. The
    answering process's batches are flushed first; the others' are `FLUSH_SECONDS` old at most."""
    metric_batches.flush()
    folder = multiprocess_dir()
    if folder is None:
        return generate_latest(REGISTRY)
    _forget_dead_processes(folder)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(folder))
    return generate_latest(registry)


def process_started(role: str) -> None:
    PROCESSES.labels(role=role).inc()


def process_stopped(role: str) -> None:
    """A process that stops cleanly leaves the live gauges at once; a killed one at the next
    scrape (`_forget_dead_processes`)."""
    metric_batches.flush()  # a worker process of uvicorn's exits without running atexit
    PROCESSES.labels(role=role).dec()
    folder = multiprocess_dir()
    if folder is not None:
        mark_process_dead(os.getpid(), str(folder))


def _forget_dead_processes(folder: Path) -> None:
    """Drop the live gauges of processes that are gone without saying so (SIGKILL, a crash):
    they all ran on this host, as the folder is local, so their pids can be checked here.
    Their counters and histograms stay: what a dead process counted still happened."""
    for path in folder.glob("gauge_live*_*.db"):
        match = _LIVE_GAUGE_FILE.fullmatch(path.name)
        if match and not is_running(int(match.group(1))):
            mark_process_dead(int(match.group(1)), str(folder))
