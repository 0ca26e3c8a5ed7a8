"""OpenAI Responses routes: POST /v1/responses (JSON and SSE), GET / DELETE /v1/responses/{id},
GET /v1/responses/{id}/input_items, POST /v1/responses/input_tokens.

Thin: the body goes to the same pipeline as chat, with the Responses ingress
(lockgate/ingress/responses/) doing the dialect. Stored responses (`store`, default
true) are written here, before the client receives the response (or its
response.completed event), so the next turn's previous_response_id always finds it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import structlog
from fastapi import APIRouter, Request
from starlette.responses import Response

from lockgate.api.http import encode, error_response, json_response, read_body, request_id_of
from lockgate.auth import Principal
from lockgate.errors import GatewayError, InvalidRequest, ModelNotFound, NotFound, PermissionDenied
from lockgate.ingress.messages.adapter import decode
from lockgate.ingress.responses.adapter import ResponsesIngress
from lockgate.ingress.responses.request import to_chat
from lockgate.ingress.responses.store import ResponseStore, with_ids
from lockgate.pipeline import JsonOutcome, RequestContext, StreamOutcome
from lockgate.providers.anthropic.request import to_anthropic
from lockgate.providers.base import estimate_tokens

log = structlog.get_logger("lockgate.api.responses")
router = APIRouter(tags=["OpenAI-compatible"])


def _store(request: Request) -> ResponseStore:
    store: ResponseStore = request.app.state.gateway.responses  # made at start-up
    return store


async def _principal(request: Request) -> Principal:
    gateway = request.app.state.gateway
    return await gateway.pipeline.authenticator.authenticate(request.headers, request.client.host if request.client else None)


async def serve(request: Request, endpoint: str) -> Response:
    """One POST /v1/responses."""
    gateway = request.app.state.gateway
    request_id = request_id_of(request)
    ingress = ResponsesIngress(request_id)
    ctx = RequestContext(
        request_id=request_id, endpoint="responses", client=request.client.host if request.client else None, ingress=ingress
    )
    try:
        raw = await read_body(request, gateway.config.server.max_body_bytes)
        ingress.original = body = decode(raw)  # parsed once: the ingress translates this body
        previous = body.get("previous_response_id")
        if previous is not None:
            ingress.history = await _history(request, previous)
    except GatewayError as err:
        return encode(gateway.pipeline.fail(ctx, err))
    outcome = await gateway.pipeline.handle(ctx, raw, request.headers)
    if body.get("store") is False or ctx.principal is None:
        return encode(outcome)
    if isinstance(outcome, JsonOutcome) and outcome.status == 200 and ingress.result is not None:
        await _save(request, ctx, ingress, ingress.result)
    elif isinstance(outcome, StreamOutcome):
        outcome.chunks = _saving(request, ctx, ingress, outcome.chunks)
    return encode(outcome)


async def _history(request: Request, previous: Any) -> list[dict[str, Any]]:
    if not isinstance(previous, str) or not previous:
        raise InvalidRequest("`previous_response_id` must be a response id.", param="previous_response_id")
    principal = await _principal(request)
    items = await _store(request).conversation(previous, principal.key_id)
    if items is None:
        # As OpenAI: never stored, deleted, or another key's.
        raise InvalidRequest(
            f"Previous response with id '{previous}' not found.", param="previous_response_id", code="previous_response_not_found"
        )
    return items


async def _save(request: Request, ctx: RequestContext, ingress: ResponsesIngress, response: dict[str, Any]) -> None:
    try:
        await _store(request).save(
            response,
            owner=ctx.principal.key_id,  # type: ignore[union-attr]
            deployment=ctx.upstream.id if ctx.upstream else None,
            history=ingress.history,
            input_items=with_ids(ingress.new_items()),
        )
    except Exception:
        # The answer was produced and paid for: it is still returned; only a later chain on it fails.
        log.exception("response_store_failed", request_id=ctx.request_id)


async def _saving(
    request: Request, ctx: RequestContext, ingress: ResponsesIngress, chunks: AsyncIterator[bytes]
) -> AsyncIterator[bytes]:
    """Relay a stream, storing the response before the bytes that carry response.completed go out."""
    stored = False
    try:
        async for chunk in chunks:
            encoder = ingress.encoder
            if encoder is not None and encoder.finished and encoder.response["status"] in ("completed", "incomplete"):
                if not stored:
                    stored = True
                    await _save(request, ctx, ingress, encoder.response)
            yield chunk
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]


def _error(err: GatewayError) -> Response:
    return error_response(err)


def _not_found(response_id: str) -> NotFound:
    return NotFound(f"No response found with id '{response_id}'.", param="response_id")


@router.post(
    "/v1/responses",
    summary="Create a response (OpenAI Responses API)",
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}},
)
async def create_response(request: Request) -> Response:
    return await serve(request, "responses")


@router.get("/v1/responses/{response_id}", summary="Retrieve a stored response")
async def retrieve_response(request: Request, response_id: str) -> Response:
    try:
        principal = await _principal(request)
        found = await _store(request).get(response_id, principal.key_id)
        if found is None:
            raise _not_found(response_id)
    except GatewayError as err:
        return _error(err)
    return json_response(orjson.dumps(found))


@router.delete("/v1/responses/{response_id}", summary="Delete a stored response")
async def delete_response(request: Request, response_id: str) -> Response:
    try:
        principal = await _principal(request)
        if not await _store(request).delete(response_id, principal.key_id):
            raise _not_found(response_id)
    except GatewayError as err:
        return _error(err)
    return json_response(orjson.dumps({"id": response_id, "object": "response.deleted", "deleted": True}))


@router.get("/v1/responses/{response_id}/input_items", summary="List a stored response's input items")
async def list_input_items(request: Request, response_id: str) -> Response:
    try:
        limit, order, after = _page_params(request)
        principal = await _principal(request)
        items = await _store(request).input_items(response_id, principal.key_id)
        if items is None:
            raise _not_found(response_id)
    except GatewayError as err:
        return _error(err)
    return json_response(orjson.dumps(page(items, limit=limit, order=order, after=after)))


def _page_params(request: Request) -> tuple[int, str, str | None]:
    query = request.query_params
    raw_limit = query.get("limit", "20")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 100:
        raise InvalidRequest("`limit` must be an integer from 1 to 100.", param="limit")
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequest("`order` must be asc or desc.", param="order")
    return int(raw_limit), order, query.get("after") or None


def page(items: list[dict[str, Any]], *, limit: int, order: str, after: str | None) -> dict[str, Any]:
    """One page of a list, OpenAI's cursor style: items after the one with id `after`, in `order`."""
    ordered = items[::-1] if order == "desc" else list(items)
    if after is not None:
        ids = [item.get("id") for item in ordered]
        if after not in ids:
            raise InvalidRequest(f"No input item with id '{after}' in this response.", param="after")
        ordered = ordered[ids.index(after) + 1 :]
    data = ordered[:limit]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": len(ordered) > limit,
    }


# What Anthropic's count_tokens accepts of a translated Messages body.
_COUNTED = ("model", "messages", "system", "tools", "tool_choice", "thinking")


@router.post(
    "/v1/responses/input_tokens",
    summary="Count a Responses request's input tokens",
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}},
)
async def input_tokens(request: Request) -> Response:
    """The input tokens a Responses body would use: Anthropic's own count on an Anthropic deployment,
    else the gateway's estimate (about four characters a token of the translated prompt and tools).
    Validated as POST /v1/responses would validate it; nothing is stored or recorded."""
    gateway = request.app.state.gateway
    try:
        principal = await _principal(request)
        body = decode(await read_body(request, gateway.config.server.max_body_bytes))
        history = await _counted_history(request, principal.key_id, body.get("previous_response_id"))
        chat = to_chat({**body, "stream": False}, history)
        model = chat["model"]
        route = gateway.router.get(model)
        if route is None:
            raise ModelNotFound(model)
        if not principal.allows(model):
            raise PermissionDenied(f"This key is not allowed to use the model `{model}`.", param="model")
        upstream = route.upstreams[0]
        if hasattr(upstream.provider, "count_tokens"):  # Anthropic: exact, from the deployment itself
            payload, _ = to_anthropic({**chat, "model": upstream.config.model}, max_tokens_default=1)
            count = await upstream.provider.count_tokens({k: v for k, v in payload.items() if k in _COUNTED})
        else:
            count = estimate_tokens(orjson.dumps([chat["messages"], chat.get("tools")]).decode())
    except GatewayError as err:
        return _error(err)
    return json_response(orjson.dumps({"object": "response.input_tokens", "input_tokens": count}))


async def _counted_history(request: Request, owner: str, previous: Any) -> list[dict[str, Any]]:
    """The stored conversation a chained count includes; an unknown id is refused as POST /v1/responses refuses it."""
    if previous is None:
        return []
    if not isinstance(previous, str) or not previous:
        raise InvalidRequest("`previous_response_id` must be a response id.", param="previous_response_id")
    items = await _store(request).conversation(previous, owner)
    if items is None:
        raise InvalidRequest(
            f"Previous response with id '{previous}' not found.", param="previous_response_id", code="previous_response_not_found"
        )
    return items
