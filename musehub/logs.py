"""One log format for the API and the worker: time, level, logger, message (with repo, tip and
workflow ids in the message's key=value pairs)."""

from __future__ import annotations

import logging
import os


def configure_logging() -> None:
    if logging.getLogger().handlers:
        return  # the host (pytest, uvicorn --log-config) already decided
    logging.basicConfig(
        level=os.environ.get("MUSEHUB_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
