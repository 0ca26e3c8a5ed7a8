"""GET /metrics (Prometheus text format). The in-flight gauge is kept by api/front.py."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

from lockgate.api.openapi import errors
from lockgate.api.spec_examples import METRICS
from lockgate.errors import NotFound
from lockgate.telemetry import metrics

router = APIRouter(tags=["Operations"])


@router.get(
    "/metrics",
    summary="Prometheus metrics (all workers)",
    responses={
        200: {"description": "Prometheus text format", "content": {CONTENT_TYPE_LATEST: {"example": METRICS}}},
        **{404: {**errors(404)[404], "description": "Metrics are off (telemetry.metrics: false)"}},
    },
    response_class=Response,
)
async def prometheus_metrics(request: Request) -> Response:
    if not request.app.state.gateway.config.telemetry.metrics:
        raise NotFound("Metrics are off on this gateway (telemetry.metrics: false).")
    # Multiprocess rendering reads one file per worker: off the event loop.
    body = await asyncio.to_thread(metrics.render) if metrics.MULTIPROC else metrics.render()
    return Response(body, 200, media_type=CONTENT_TYPE_LATEST)
