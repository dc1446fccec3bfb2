"""`musehub api`: the API server as a deployment runs it (`api/server.py`)."""

from __future__ import annotations

import argparse

from musehub.cli.flags import settings_with_flags
from musehub.metrics_dir import metrics_dir

FLAGS = {
    "host": "MUSEHUB_API_HOST",
    "port": "MUSEHUB_API_PORT",
    "workers": "MUSEHUB_API_WORKERS",
    "proxy_headers": "MUSEHUB_API_PROXY_HEADERS",
    "forwarded_allow_ips": "MUSEHUB_API_FORWARDED_ALLOW_IPS",
    "shutdown_timeout": "MUSEHUB_API_GRACEFUL_SHUTDOWN_SECONDS",
}


def run_api(args: argparse.Namespace) -> int:
    settings = settings_with_flags(args, FLAGS)
    # Chosen before the server (and so prometheus_client) is imported: see metrics_dir.
    with metrics_dir(settings.api.workers):
        from api.server import serve

        serve(settings)
    return 0
