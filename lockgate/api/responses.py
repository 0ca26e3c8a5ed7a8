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

from lockgate.api import spec_examples as ex
from lockgate.api import spec_models as sm
from lockgate.api.http import encode, error_response, json_response, read_body, request_id_of
from lockgate.api.openapi import AUTH_ERRORS, CALLER, REF, errors, ok, query
from lockgate.auth import Principal
from lockgate.errors import GatewayError, InvalidRequest, ModelNotFound, NotFound, PermissionDenied
from lockgate.ingress.messages.adapter import decode
from lockgate.ingress.responses.adapter import ResponsesIngress
from lockgate.ingress.responses.request import check_flags, to_chat
from lockgate.ingress.responses.store import ResponseStore, with_ids
from lockgate.pipeline import JsonOutcome, RequestContext, StreamOutcome
from lockgate.providers.anthropic.request import to_anthropic
from lockgate.providers.base import estimate_tokens

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
            ingress.history, held_by = await _history(request, previous)
            ctx.pin = _holder(request, body.get("model"), held_by)
            ingress.previous_at = ctx.pin.id if ctx.pin is not None else None
    except GatewayError as err:
        return encode(gateway.pipeline.fail(ctx, err))
    outcome = await gateway.pipeline.handle(ctx, raw, request.headers)
    if body.get("store") is False or ctx.principal is None:
        return encode(outcome)
    finished = ingress.result is not None and ingress.result.get("status") in ("completed", "incomplete")
    if isinstance(outcome, JsonOutcome) and outcome.status == 200 and finished:
        await _save(request, ctx, ingress, ingress.result)  # type: ignore[arg-type]
    elif isinstance(outcome, StreamOutcome):
        outcome.chunks = _saving(request, ctx, ingress, outcome.chunks)
    return encode(outcome)


async def _history(request: Request, previous: Any) -> tuple[list[dict[str, Any]], str | None]:
    """The stored conversation up to `previous`, and the deployment that served it."""
    if not isinstance(previous, str) or not previous:
        raise InvalidRequest("`previous_response_id` must be a response id.", param="previous_response_id")
    principal = await _principal(request)
    head = await _store(request).chain_head(previous, principal.key_id)
    if head is None:
        # As OpenAI: never stored, deleted, or another key's.
        raise InvalidRequest(
            f"Previous response with id '{previous}' not found.", param="previous_response_id", code="previous_response_not_found"
        )
    return head


def _holder(request: Request, model: Any, deployment: str | None) -> Any:
    """The native deployment of `model` that holds the previous response upstream, if any: the turn is
    pinned to it (its credential holds the state). Otherwise the conversation is sent from the store."""
    route = request.app.state.gateway.router.get(model) if isinstance(model, str) else None
    for upstream in route.upstreams if route is not None and deployment else ():
        if upstream.id == deployment and hasattr(upstream.provider, "responses_stream"):
            return upstream
    return None


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
            if not stored:
                finished = ingress.finished_response()
                if finished is not None:
                    stored = True
                    await _save(request, ctx, ingress, finished)
            yield chunk
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]


def _error(err: GatewayError) -> Response:
    return error_response(err)


def _not_found(response_id: str) -> NotFound:
    return NotFound(f"No response found with id '{response_id}'.", param="response_id")


# OpenAI's ResponseIncludable values: what GET /v1/responses/{id}?include[]= accepts.
INCLUDABLE = frozenset(
    {
        "file_search_call.results",
        "web_search_call.results",
        "web_search_call.action.sources",
        "message.input_image.image_url",
        "computer_call_output.output.image_url",
        "code_interpreter_call.outputs",
        "reasoning.encrypted_content",
        "message.output_text.logprobs",
    }
)


def _include(request: Request) -> set[str]:
    asked = request.query_params.getlist("include[]") + request.query_params.getlist("include")
    for value in asked:
        if value not in INCLUDABLE:
            raise InvalidRequest(
                f"`include` has an unsupported value {value!r}; supported: {', '.join(sorted(INCLUDABLE))}.", param="include"
            )
    if request.query_params.get("stream") in ("true", "True", "1"):
        raise InvalidRequest("Streaming a stored response back (background mode) is not supported.", param="stream")
    return set(asked)


def without_encrypted_reasoning(response: dict[str, Any]) -> dict[str, Any]:
    """The stored response as GET returns it without include=reasoning.encrypted_content (as OpenAI does)."""
    output = response.get("output")
    if not isinstance(output, list) or not any(isinstance(i, dict) and "encrypted_content" in i for i in output):
        return response
    items = [{k: v for k, v in i.items() if k != "encrypted_content"} if isinstance(i, dict) else i for i in output]
    return {**response, "output": items}


@router.get(
    "/v1/responses/{response_id}",
    summary="Retrieve a stored response",
    responses={**ok(sm.ResponseObject, ex.RESPONSE_OBJECT), **errors(404, *AUTH_ERRORS)},
    openapi_extra={"security": CALLER},
)
async def retrieve_response(request: Request, response_id: str) -> Response:
    try:
        include = _include(request)
        principal = await _principal(request)
        found = await _store(request).get(response_id, principal.key_id)
        if found is None:
            raise _not_found(response_id)
    except GatewayError as err:
        return _error(err)
    if "reasoning.encrypted_content" not in include:
        found = without_encrypted_reasoning(found)
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
        store = _store(request)
        head = await store.chain_head(response_id, principal.key_id)
        if head is None or not await store.delete(response_id, principal.key_id):
            raise _not_found(response_id)
    except GatewayError as err:
        return _error(err)
    await _delete_upstream(request, response_id, head[1])
    return json_response(orjson.dumps({"id": response_id, "object": "response.deleted", "deleted": True}))


async def _delete_upstream(request: Request, response_id: str, deployment: str | None) -> None:
    """A native deployment keeps its own copy: deleted there too (best effort; ours is gone already)."""
    for route in request.app.state.gateway.router.routes.values() if deployment else ():
        for upstream in route.upstreams:
            if upstream.id == deployment and hasattr(upstream.provider, "delete_response"):
                try:
                    await upstream.provider.delete_response(response_id)
                except GatewayError as err:
                    log.warning("upstream_response_delete_failed", deployment=deployment, error=err.kind)
                return


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
            raise NotFound(f"No input item with id '{after}' in this response.", param="after")  # state, not schema
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
    description="Anthropic's own count on an Anthropic deployment, else the gateway's estimate (about four characters a token).",
    responses={
        **ok(None, {"object": "response.input_tokens", "input_tokens": 14}),
        **errors(400, 403, 404, 413, *AUTH_ERRORS, 502, 504),
    },
    openapi_extra={
        "security": CALLER,
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": REF.format(model="ResponsesRequest")}, "example": ex.RESPONSES_REQUEST}
            },
        },
    },
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
        check_flags(body)  # as POST /v1/responses checks them, before the count turns streaming off
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
