"""How the API is served: uvicorn running the app factory with the slow-client protocol
(`api/protocol.py`), a connection cap, keep-alive and graceful-shutdown limits, all from
`ApiSettings`. `musehub api` calls `serve`; `musehub dev` starts `musehub api`, so development
runs what production runs, and the tests serve the app with the same `server_options`."""

from __future__ import annotations

import logging
import os
import signal
from typing import Any, NoReturn

import uvicorn

from api.protocol import SlowClientLimits, timed_protocol
from musehub.logs import configure_logging
from musehub.settings import ApiSettings, Settings

APP_FACTORY = "api.app:create_app"


def server_options(api: ApiSettings) -> dict[str, Any]:
    """uvicorn's options for any way of serving the app (`uvicorn.run`, `uvicorn.Config`)."""
    return {
        "http": timed_protocol(SlowClientLimits.from_settings(api)),
        "ws": "none",
        "lifespan": "on",
        "access_log": False,  # every fetch already logs its line (api/routes/fetch.py)
        "limit_concurrency": api.max_connections,  # beyond it uvicorn answers 503
        "timeout_keep_alive": api.keep_alive_seconds,
        "timeout_graceful_shutdown": api.graceful_shutdown_seconds,
        "proxy_headers": api.proxy_headers,
        "forwarded_allow_ips": api.forwarded_allow_ips,
    }


def serve(settings: Settings) -> None:
    """Serve until SIGINT or SIGTERM, then let requests in flight finish (graceful shutdown).

    Each worker process builds the app from the environment (`create_app()` reads the
    settings), so the settings given here must be the environment's (`musehub/cli/flags.py`)."""
    configure_logging()
    # uvicorn re-raises the signal that stopped it once it has shut down; a SIGTERM asked for
    # the stop, so it ends the process with 0 as SIGINT does, not as killed by a signal.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    uvicorn.run(
        APP_FACTORY,
        factory=True,
        host=settings.api.host,
        port=settings.api.port,
        workers=settings.api.workers,
        log_config=None,  # the hub's own log format (musehub/logs.py) for uvicorn's lines too
        log_level=_log_level(),
        **server_options(settings.api),
    )


def _log_level() -> int:
    """uvicorn's loggers at MUSEHUB_LOG_LEVEL (left unset, uvicorn checks for TRACE lines on
    every connection)."""
    name = os.environ.get("MUSEHUB_LOG_LEVEL", "INFO").upper()
    return logging.getLevelNamesMapping().get(name, logging.INFO)


def _exit_cleanly(signum: int, frame: object) -> NoReturn:
    raise SystemExit(0)
