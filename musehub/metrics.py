"""Prometheus metrics. The API serves them at /metrics; a worker serves its own on
MUSEHUB_WORKER_METRICS_PORT when set (builds, queue delay and GC happen there)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

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
