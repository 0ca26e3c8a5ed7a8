"""The outermost ASGI layer: request ids, security headers, CORS, the in-flight gauge, the inference fast path.

Every response gets an ``x-request-id`` and the security headers (nosniff, no referrer,
no-store unless it says otherwise, HSTS when configured); CORS (api/cors.py) runs here
only when configured. The inference POSTs (chat, completions,
embeddings) are served from here, straight to the pipeline, around the
framework's middleware stack and router; measured with bench/, that stack was
a quarter of the gateway's CPU per request. Their FastAPI routes in
api/openai.py stay as the documented (OpenAPI) form of the same handler.
Everything else (admin, health, metrics, docs) goes through FastAPI as usual.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lockgate.api.cors import Cors
from lockgate.api.http import error_response, new_request_id
from lockgate.config import ServerConfig
from lockgate.errors import GatewayInternal

log = structlog.get_logger("lockgate.api")

INFERENCE_PATHS = {"/v1/chat/completions": "chat", "/v1/completions": "completions", "/v1/embeddings": "embeddings"}
# The Anthropic Messages dialect, served the same way by api/messages.py.
MESSAGES_PATHS = {"/v1/messages": "messages", "/v1/messages/count_tokens": "count_tokens"}
# The OpenAI Responses dialect, served by api/responses.py (its GET/DELETE routes go through FastAPI).
RESPONSES_PATHS = {"/v1/responses": "responses"}


# Every answer says this, cheaply appended here (docs/limits.md#security-headers).
NO_STORE = (b"cache-control", b"no-store")


def security_headers(server: ServerConfig) -> list[tuple[bytes, bytes]]:
    """The headers every answer carries (cache-control: no-store is added where the answer sets none)."""
    headers = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]
    if server.hsts_max_age_s is not None:
        value = f"max-age={server.hsts_max_age_s}" + ("; includeSubDomains" if server.hsts_include_subdomains else "")
        headers.append((b"strict-transport-security", value.encode()))
    return headers


class Front:
    def __init__(
        self,
        app: ASGIApp,
        serve: Callable[[Request, str], Any],
        in_flight: Any = None,
        serve_messages: Callable[[Request, str], Any] | None = None,
        serve_responses: Callable[[Request, str], Any] | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
        cors: Cors | None = None,
    ) -> None:
        self.app = app
        self._serve = serve  # api.openai.serve: (request, endpoint) -> Response
        self._serve_messages = serve_messages  # api.messages.serve
        self._serve_responses = serve_responses  # api.responses.serve
        self._in_flight = in_flight  # a gauge counting /v1/ requests until their last byte
        self._headers = headers or []  # security_headers(), on every answer
        self._cors = cors  # server.cors, when configured

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        extra = [(b"x-request-id", request_id.encode()), *self._headers]
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [*message.get("headers", ()), *extra]
                for name, _ in headers:
                    if name == b"cache-control":
                        break
                else:
                    headers.append(NO_STORE)
                message["headers"] = headers
            await send(message)

        gauge = self._in_flight if scope["path"].startswith("/v1/") else None
        if gauge is not None:
            gauge.inc()
        try:
            if self._cors is None:
                await self._dispatch(scope, receive, send_with_id)
            else:
                await self._cors(scope, receive, send_with_id, self._dispatch)
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

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        serve, endpoint = self._serve, None
        if scope["method"] == "POST":
            endpoint = INFERENCE_PATHS.get(scope["path"])
            if endpoint is None and self._serve_messages is not None:
                serve, endpoint = self._serve_messages, MESSAGES_PATHS.get(scope["path"])
            if endpoint is None and self._serve_responses is not None:
                serve, endpoint = self._serve_responses, RESPONSES_PATHS.get(scope["path"])
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        response = await serve(Request(scope, receive), endpoint)
        await response(scope, receive, send)
