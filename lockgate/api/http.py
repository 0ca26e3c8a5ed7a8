"""Small pieces every route shares: reading a bounded body, encoding outcomes and errors, request ids."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from lockgate.errors import Dialect, GatewayError, PayloadTooLarge, render
from lockgate.pipeline import JsonOutcome, Outcome, StreamOutcome

# no-store: a stream carries usage (api/front.py adds it to every answer that sets no cache-control).
SSE_HEADERS = {"cache-control": "no-store", "x-accel-buffering": "no"}


def new_request_id() -> str:
    return "req_" + os.urandom(12).hex()


def request_id_of(request: Request) -> str:
    return request.scope.get("state", {}).get("request_id") or new_request_id()


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing with 413 as soon as it is known to pass `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The request body is {declared} bytes; the limit is {limit} bytes.")
    parts: list[bytes] = []
    size = 0
    async for part in request.stream():
        size += len(part)
        if size > limit:
            raise PayloadTooLarge(f"The request body passes the limit of {limit} bytes.")
        parts.append(part)
    return b"".join(parts)


# The scope extension our HTTP protocol (lockgate/http_server.py) adds to every request: a relay
# registers there to hear at once that its client went away.
DISCONNECT = "lockgate.disconnect"


class DisconnectWatch:
    """Told by the protocol that the connection was lost before its response completed."""

    __slots__ = ("callback", "lost")

    def __init__(self) -> None:
        self.callback: Callable[[], None] | None = None
        self.lost = False

    def connection_lost(self) -> None:
        self.lost = True
        if self.callback is not None:
            self.callback()


class RelayResponse(Response):
    """An SSE response that always releases its upstream, even when the client left before the first byte.

    Under our own protocol, the client's leaving is heard from the connection itself (DisconnectWatch):
    the relay is cancelled at once, with no task per stream listening on ``receive``. Elsewhere (an
    in-process ASGI client), starlette's StreamingResponse listens for ``http.disconnect``.
    """

    def __init__(self, outcome: StreamOutcome) -> None:  # not Response's: no body to render
        self._outcome = outcome
        self._sse_headers = {**SSE_HEADERS, **outcome.headers}
        self.status_code = outcome.status
        self.background = None
        self.raw_headers = [(b"content-type", b"text/event-stream; charset=utf-8")]
        self.raw_headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self._sse_headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        watch = scope.get("extensions", {}).get(DISCONNECT)
        try:
            if watch is None:
                response = StreamingResponse(
                    self._outcome.chunks, self._outcome.status, self._sse_headers, media_type="text/event-stream"
                )
                await response(scope, receive, send)
            else:
                await self._relay(watch, send)
        finally:
            # Deterministic clean-up instead of waiting for the garbage collector to close the generator.
            await self._outcome.chunks.aclose()  # type: ignore[attr-defined]
            if self._outcome.abandon is not None:
                await self._outcome.abandon()

    async def _relay(self, watch: DisconnectWatch, send: Send) -> None:
        task = asyncio.current_task()
        assert task is not None
        gone = False

        def on_disconnect() -> None:
            nonlocal gone
            gone = True
            task.cancel()

        if watch.lost:
            return  # gone while the stream was being opened: the clean-up releases it
        watch.callback = on_disconnect
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            async for chunk in self._outcome.chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not gone:
                raise  # the server is stopping: not ours to swallow
            task.uncancel()  # the client left: the clean-up above records the request
        finally:
            watch.callback = None


def encode(outcome: Outcome) -> Response:
    if isinstance(outcome, JsonOutcome):
        return Response(outcome.body, outcome.status, outcome.headers, media_type="application/json")
    return RelayResponse(outcome)


def client_json(body: Any) -> bytes:
    """JSON of a body holding the client's own JSON (key and team metadata): integers past 64 bits and lone
    surrogates are valid JSON that orjson refuses, so they go through the standard library instead."""
    try:
        return orjson.dumps(body)
    except orjson.JSONEncodeError:
        return json.dumps(body, default=str).encode()


def json_response(body: bytes, status: int = 200, headers: dict[str, Any] | None = None) -> Response:
    return Response(body, status, headers, media_type="application/json")


def refusal(err: GatewayError, path: str, request_id: str | None = None) -> tuple[int, dict[str, str], bytes]:
    """An error raised outside any route (CORS, the HTTP protocol's limits) in the dialect of ``path``."""
    if path == "/v1/messages" or path.startswith("/v1/messages/"):
        from lockgate.errors_anthropic import render_error

        status, body = render_error(err, request_id)
        return status, dict(err.headers), body
    rendered = render(err)
    return rendered.status, rendered.headers, rendered.body


def error_response(err: GatewayError, dialect: Dialect = "openai") -> Response:
    """An error outside the pipeline (admin, models, usage, framework errors), rendered by errors.render."""
    rendered = render(err, dialect)
    return json_response(rendered.body, rendered.status, rendered.headers)
