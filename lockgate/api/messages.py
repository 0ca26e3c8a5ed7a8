"""Anthropic Messages routes: POST /v1/messages (JSON and SSE) and /v1/messages/count_tokens.

Thin: the body is read here and handed to the same pipeline as chat, with the
Messages ingress (lockgate/ingress/messages/) doing the dialect. `?beta=true`
(what the SDK's beta client and Claude Code add) is the same endpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from lockgate.api.http import encode, json_response, read_body, request_id_of
from lockgate.errors import GatewayError, ModelNotFound, PermissionDenied
from lockgate.errors_anthropic import render_error
from lockgate.ingress.messages.adapter import MessagesIngress, decode, with_pings
from lockgate.ingress.messages.request import to_chat
from lockgate.pipeline import RequestContext, StreamOutcome
from lockgate.providers.base import estimate_tokens

router = APIRouter(tags=["Anthropic-compatible"])  # its POSTs are declared in api/routes.py


async def serve(request: Request, endpoint: str) -> Response:
    """One Messages request (endpoint "messages") or a token count (endpoint "count_tokens")."""
    if endpoint == "count_tokens":
        return await count_tokens(request)
    gateway = request.app.state.gateway
    client = request.client.host if request.client else None
    request_id = request_id_of(request)
    ingress = MessagesIngress(request_id, beta=request.headers.get("anthropic-beta"))
    session = request.headers.get("x-claude-code-session-id")
    if session:
        ingress.record_extra["session_id"] = session[:200]  # grouping for analytics ($ai_session_id)
    ctx = RequestContext(request_id=request_id, endpoint="messages", client=client, ingress=ingress)
    try:
        raw = await read_body(request, gateway.config.server.max_body_bytes)
    except GatewayError as err:
        outcome: Any = gateway.pipeline.fail(ctx, err)
    else:
        outcome = await gateway.pipeline.handle(ctx, raw, request.headers)
    outcome.headers["request-id"] = request_id  # Anthropic's name for it; the SDK reads this one
    if isinstance(outcome, StreamOutcome):
        outcome.chunks = with_pings(outcome.chunks, gateway.config.server.sse_ping_interval_s)
    return encode(outcome)


async def count_tokens(request: Request) -> Response:
    """The prompt's input tokens: Anthropic's own count for an Anthropic deployment, else a local
    estimate (about four characters a token), never an error."""
    gateway = request.app.state.gateway
    request_id = request_id_of(request)
    headers = {"request-id": request_id}
    try:
        principal = await gateway.pipeline.authenticator.authenticate(
            request.headers, request.client.host if request.client else None
        )
        body = decode(await read_body(request, gateway.config.server.max_body_bytes))
        chat = to_chat({**body, "max_tokens": 1, "stream": False})  # validates as /v1/messages would
        model = chat["model"]
        if gateway.router.get(model) is None:
            raise ModelNotFound(model)
        if not principal.allows(model):
            raise PermissionDenied(f"This key is not allowed to use the model `{model}`.", param="model")
        upstream = gateway.router.get(model).upstreams[0]
        if hasattr(upstream.provider, "count_tokens"):
            # Exact, from the Anthropic deployment itself (the body as sent, model rewritten).
            native = {k: v for k, v in body.items() if k not in ("max_tokens", "stream")}
            count = await upstream.provider.count_tokens(
                {**native, "model": upstream.config.model}, beta=request.headers.get("anthropic-beta")
            )
        else:
            count = estimate_tokens(orjson.dumps([chat["messages"], chat.get("tools")]).decode())
    except GatewayError as err:
        status, payload = render_error(err, request_id)
        return json_response(payload, status, {**headers, **err.headers})
    return json_response(orjson.dumps({"input_tokens": count}), 200, headers)


def is_messages_path(path: str) -> bool:
    return path == "/v1/messages" or path.startswith("/v1/messages/")


def error_response(request: Request, err: GatewayError, headers: Mapping[str, str] | None = None) -> Response:
    """A framework error (unknown route, wrong method) under /v1/messages, in Anthropic's shape."""
    request_id = request_id_of(request)
    status, payload = render_error(err, request_id)
    return json_response(payload, status, {**(headers or {}), **err.headers, "request-id": request_id})
