"""GET /metrics (Prometheus text format). The in-flight gauge is kept by api/front.py."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

from lockgate.telemetry import metrics

router = APIRouter(tags=["Operations"])


@router.get("/metrics", summary="Prometheus metrics (all workers)", include_in_schema=True)
async def prometheus_metrics() -> Response:
    # Multiprocess rendering reads one file per worker: off the event loop.
    body = await asyncio.to_thread(metrics.render) if metrics.MULTIPROC else metrics.render()
    return Response(body, 200, media_type=CONTENT_TYPE_LATEST)
