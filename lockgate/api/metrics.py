"""GET /metrics (Prometheus text format) and the in-flight gauge around inference requests."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from lockgate.telemetry import metrics

router = APIRouter(tags=["Operations"])


@router.get("/metrics", summary="Prometheus metrics (all workers)", include_in_schema=True)
async def prometheus_metrics() -> Response:
    # Multiprocess rendering reads one file per worker: off the event loop.
    body = await asyncio.to_thread(metrics.render) if metrics.MULTIPROC else metrics.render()
    return Response(body, 200, media_type=CONTENT_TYPE_LATEST)


class InFlightMiddleware:
    """Counts /v1/ requests from arrival until the last byte is sent (streams included)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._gauge = metrics.IN_FLIGHT

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        self._gauge.inc()
        try:
            await self.app(scope, receive, send)
        finally:
            self._gauge.dec()
