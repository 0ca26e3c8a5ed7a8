"""CORS for browser apps (server.cors): preflights answered here, allowed origins' answers marked.

Built only when configured, so a gateway without CORS pays nothing. Unlike Starlette's
CORSMiddleware, an origin that is not allowed gets no CORS header at all (not even the
exposed or credential headers), and a refused preflight is an OpenAI error (403), counted.
Called by api/front.py with its request-id sender, so every answer here carries the same
request id and security headers as any other.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from starlette.types import Message, Receive, Scope, Send

from lockgate.api.http import refusal
from lockgate.config import CorsConfig
from lockgate.errors import CorsRefused

Dispatch = Callable[[Scope, Receive, Send], Awaitable[None]]


class Cors:
    def __init__(self, config: CorsConfig, on_refused: Callable[[str], None] | None = None) -> None:
        origins = [o.lower() for o in config.allow_origins]
        self._any_origin = "*" in origins
        self._exact = {o.encode() for o in origins if "://*." not in o and o != "*"}
        # "https://*.example.com" -> (b"https://", b".example.com"): one label or more before the suffix.
        self._suffixes: list[tuple[bytes, bytes]] = []
        for o in origins:
            if "://*." in o:
                scheme, rest = o.split("://*.", 1)
                self._suffixes.append((f"{scheme}://".encode(), f".{rest}".encode()))
        self._regex = re.compile(config.allow_origin_regex) if config.allow_origin_regex else None
        self._methods = {m.upper() for m in config.allow_methods}
        headers = [h.lower() for h in config.allow_headers]
        self._any_header = "*" in headers
        self._headers = {h for h in headers if not h.endswith("*")}
        self._header_prefixes = tuple(h[:-1] for h in headers if h.endswith("*") and h != "*")
        expose = [h.lower() for h in config.expose_headers]
        self._expose_exact = [h.encode() for h in expose if not h.endswith("*")]
        self._expose_prefixes = tuple(h[:-1].encode() for h in expose if h.endswith("*"))
        # A wildcard answer ("*") only without credentials; otherwise the origin itself, echoed.
        self._wildcard = self._any_origin and not config.allow_credentials
        self._credentials = [(b"access-control-allow-credentials", b"true")] if config.allow_credentials else []
        self._vary = [] if self._wildcard else [(b"vary", b"Origin")]
        self._preflight = [
            (b"access-control-allow-methods", ", ".join(sorted(self._methods)).encode()),
            (b"access-control-max-age", str(config.max_age_s).encode()),
            *self._credentials,
        ]
        self._on_refused = on_refused  # counts refusals (metrics), by reason

    def allowed(self, origin: bytes) -> bool:
        if self._any_origin:
            return True
        origin = origin.lower()
        if origin in self._exact:
            return True
        for scheme, suffix in self._suffixes:
            if origin.startswith(scheme) and origin.endswith(suffix) and len(origin) > len(scheme) + len(suffix):
                host = origin[len(scheme) : -len(suffix)]
                if b"/" not in host and b":" not in host:
                    return True
        return self._regex is not None and self._regex.fullmatch(origin.decode("latin-1")) is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send, dispatch: Dispatch) -> None:
        origin = request_method = request_headers = None
        for name, value in scope["headers"]:
            if name == b"origin":
                origin = value
            elif name == b"access-control-request-method":
                request_method = value
            elif name == b"access-control-request-headers":
                request_headers = value
        if origin is None:
            await dispatch(scope, receive, send)
            return
        if scope["method"] == "OPTIONS" and request_method is not None:
            await self._answer_preflight(origin, request_method, request_headers, scope, receive, send)
            return
        if not self.allowed(origin):
            await dispatch(scope, receive, send)  # served as from anywhere else, and no CORS header
            return
        allow_origin = [(b"access-control-allow-origin", b"*" if self._wildcard else origin)]

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                expose = list(self._expose_exact)
                if self._expose_prefixes:
                    expose += [k for k, _ in headers if k.lower().startswith(self._expose_prefixes)]
                headers += allow_origin + self._credentials + self._vary
                if expose:
                    headers.append((b"access-control-expose-headers", b", ".join(dict.fromkeys(expose))))
                message["headers"] = headers
            await send(message)

        await dispatch(scope, receive, send_with_cors)

    async def _answer_preflight(
        self, origin: bytes, method: bytes, asked: bytes | None, scope: Scope, receive: Receive, send: Send
    ) -> None:
        if not self.allowed(origin):
            await self._refuse("origin", f"The origin {origin.decode('latin-1')!r} is not allowed (server.cors).", scope, send)
            return
        if method.decode("latin-1").upper() not in self._methods:
            await self._refuse("method", f"The method {method.decode('latin-1')!r} is not allowed (server.cors).", scope, send)
            return
        names = [h.strip() for h in asked.decode("latin-1").lower().split(",") if h.strip()] if asked else []
        if not self._any_header:
            for name in names:
                if name not in self._headers and not name.startswith(self._header_prefixes or ("\0",)):
                    await self._refuse("header", f"The request header {name!r} is not allowed (server.cors).", scope, send)
                    return
        headers = [(b"access-control-allow-origin", b"*" if self._wildcard else origin), *self._preflight, *self._vary]
        if names:
            headers.append((b"access-control-allow-headers", ", ".join(names).encode()))
        headers.append((b"content-length", b"0"))
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    async def _refuse(self, reason: str, message: str, scope: Scope, send: Send) -> None:
        if self._on_refused is not None:
            self._on_refused(f"cors_{reason}")
        status, _, body = refusal(CorsRefused(message), scope["path"], scope.get("state", {}).get("request_id"))
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
