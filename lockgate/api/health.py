"""Liveness and readiness."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from lockgate.api import spec_examples as ex
from lockgate.api import spec_models as sm
from lockgate.api.http import json_response
from lockgate.api.openapi import ok

router = APIRouter(tags=["Health"])


@router.get("/health/live", summary="The process is up", responses=ok(sm.Live, {"status": "ok"}))
async def live() -> Response:
    return json_response(b'{"status":"ok"}')


@router.get(
    "/health/ready",
    summary="The gateway can serve, with each part's state",
    responses={
        **ok(sm.Readiness, ex.READY, "Ready (or degraded, still serving)"),
        **ok(
            sm.Readiness,
            {"status": "not_ready", "problems": ["database"]},
            "Cannot serve: starting, draining, or a part down",
            503,
        ),
    },
)
async def ready(request: Request) -> Response:
    gateway = getattr(request.app.state, "gateway", None)
    if gateway is None or not gateway.started:
        return json_response(b'{"status":"starting"}', 503)
    readiness = getattr(getattr(gateway, "telemetry", None), "readiness", None)
    if readiness is not None:  # each dependency probed, 503 when the gateway cannot serve
        status, report = await readiness.report()
        return json_response(orjson.dumps(report), status)
    body = {
        "status": "ready",
        "models": gateway.router.describe(),
        "sinks": {"queue_depth": gateway.sinks.depth, "dropped": gateway.sinks.dropped},
    }
    return json_response(orjson.dumps(body))
