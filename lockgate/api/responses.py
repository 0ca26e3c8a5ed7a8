"""OpenAI Responses routes: POST /v1/responses (JSON and SSE), GET / DELETE /v1/responses/{id},
GET /v1/responses/{id}/input_items.

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

from lockgate.api import spec_examples as ex
from lockgate.api import spec_models as sm
from lockgate.api.http import encode, error_response, json_response, read_body, request_id_of
from lockgate.api.openapi import AUTH_ERRORS, CALLER, errors, ok, query
from lockgate.auth import Principal
from lockgate.errors import GatewayError, InvalidRequest, NotFound
from lockgate.ingress.messages.adapter import decode
from lockgate.ingress.responses.adapter import ResponsesIngress
from lockgate.ingress.responses.store import ResponseStore, with_ids
from lockgate.pipeline import JsonOutcome, RequestContext, StreamOutcome

log = structlog.get_logger("lockgate.api.responses")
router = APIRouter(tags=["OpenAI-compatible"])  # POST /v1/responses is declared in api/routes.py


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


@router.get(
    "/v1/responses/{response_id}",
    summary="Retrieve a stored response",
    responses={**ok(sm.ResponseObject, ex.RESPONSE_OBJECT), **errors(404, *AUTH_ERRORS)},
    openapi_extra={"security": CALLER},
)
async def retrieve_response(request: Request, response_id: str) -> Response:
    try:
        principal = await _principal(request)
        found = await _store(request).get(response_id, principal.key_id)
        if found is None:
            raise _not_found(response_id)
    except GatewayError as err:
        return _error(err)
    return json_response(orjson.dumps(found))


@router.delete(
    "/v1/responses/{response_id}",
    summary="Delete a stored response",
    responses={
        **ok(sm.ResponseDeleted, {"id": ex.RESPONSE_OBJECT["id"], "object": "response.deleted", "deleted": True}),
        **errors(404, *AUTH_ERRORS),
    },
    openapi_extra={"security": CALLER},
)
async def delete_response(request: Request, response_id: str) -> Response:
    try:
        principal = await _principal(request)
        if not await _store(request).delete(response_id, principal.key_id):
            raise _not_found(response_id)
    except GatewayError as err:
        return _error(err)
    return json_response(orjson.dumps({"id": response_id, "object": "response.deleted", "deleted": True}))


@router.get(
    "/v1/responses/{response_id}/input_items",
    summary="List a stored response's input items",
    responses={
        **ok(
            sm.InputItemList,
            {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False},
        ),
        **errors(400, 404, *AUTH_ERRORS),
    },
    openapi_extra={
        "security": CALLER,
        "parameters": [
            query("limit", "Items per page, 1 to 100 (default 20)", {"type": "integer", "minimum": 1, "maximum": 100}),
            query("order", "asc or desc (default desc)", {"type": "string", "enum": ["asc", "desc"]}),
            query("after", "The id of the item to list after (a cursor)", {"type": "string"}),
        ],
    },
)
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
