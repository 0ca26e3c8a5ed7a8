"""The outermost ASGI layer: request ids, the in-flight gauge, and the inference fast path.

Every response gets an ``x-request-id``. The inference POSTs (the table in
api/routes.py: chat, completions, embeddings, responses, messages) are served
from here, straight to the pipeline, around the framework's middleware stack and
router; measured with bench/, that stack was a quarter of the gateway's CPU per
request. The same table entries are FastAPI routes too (the spec, 405s).
Everything else (admin, health, metrics, docs) goes through FastAPI as usual.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lockgate.api.http import error_response, new_request_id
from lockgate.errors import GatewayInternal

log = structlog.get_logger("lockgate.api")

Serve = Callable[[Request, str], Any]


class Front:
    def __init__(
        self,
        app: ASGIApp,
        paths: dict[str, tuple[Serve, str]],
        in_flight: Any = None,
    ) -> None:
        self.app = app
        self._paths = paths  # POST path -> (serve, endpoint): api.routes.fast_paths()
        self._in_flight = in_flight  # a gauge counting /v1/ requests until their last byte

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        header = (b"x-request-id", request_id.encode())
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        gauge = self._in_flight if scope["path"].startswith("/v1/") else None
        if gauge is not None:
            gauge.inc()
        try:
            fast = self._paths.get(scope["path"]) if scope["method"] == "POST" else None
            if fast is None:
                try:
                    await self.app(scope, receive, send_with_id)
                except Exception:
                    # The framework's last-resort answer is sent outside this layer (no request id): answer here.
                    log.exception("unhandled_error", path=scope["path"], request_id=request_id)
                    if not started:
                        err = GatewayInternal("The gateway failed to process this request.")
                        await error_response(err)(scope, receive, send_with_id)
                return
            serve, endpoint = fast
            try:
                response = await serve(Request(scope, receive), endpoint)
                await response(scope, receive, send_with_id)
            except ClientDisconnect:
                return  # gone before its body arrived: nobody to answer
            except Exception:
                # The pipeline renders its own errors; this is a bug, answered without a trace.
                log.exception("unhandled_error", path=scope["path"], request_id=request_id)
                if not started:
                    err = GatewayInternal("The gateway failed to process this request.")
                    await error_response(err)(scope, receive, send_with_id)
        finally:
            if gauge is not None:
                gauge.dec()
