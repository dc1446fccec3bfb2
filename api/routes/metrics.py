"""`GET /metrics` for Prometheus: the sum over every process of this API (`musehub/metrics.py`)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from musehub.metrics import exposition

router = APIRouter()


@router.get("/metrics")
def metrics() -> Response:
    """A plain `def`: reading every process's files runs in the thread pool, off the loop."""
    return Response(exposition(), media_type=CONTENT_TYPE_LATEST)
