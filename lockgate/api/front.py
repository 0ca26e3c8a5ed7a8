"""The outermost ASGI layer: request ids, security headers, CORS, the in-flight gauge, the inference fast path.

Every response gets an ``x-request-id`` and the security headers (nosniff, no referrer,
no-store unless it says otherwise, HSTS when configured); CORS (api/cors.py) runs here
only when configured. The inference POSTs (the table in api/routes.py: chat,
completions, embeddings, responses, messages) are served from here, straight to the
pipeline, around the framework's middleware stack and router; measured with bench/, that
stack was a quarter of the gateway's CPU per request. The same table entries are FastAPI
routes too (the spec, 405s).
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

Serve = Callable[[Request, str], Any]


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
        paths: dict[str, tuple[Serve, str]],
        in_flight: Any = None,
        headers: list[tuple[bytes, bytes]] | None = None,
        cors: Cors | None = None,
    ) -> None:
        self.app = app
        self._paths = paths  # POST path -> (serve, endpoint): api.routes.fast_paths()
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
        fast = self._paths.get(scope["path"]) if scope["method"] == "POST" else None
        if fast is None:
            await self.app(scope, receive, send)
            return
        serve, endpoint = fast
        response = await serve(Request(scope, receive), endpoint)
        await response(scope, receive, send)
