"""OpenAI-compatible routes: the inference `serve` (declared in api/routes.py) and /v1/models."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from lockgate.api import spec_examples as ex
from lockgate.api import spec_models as sm
from lockgate.api.deps import authenticate, client_address
from lockgate.api.http import encode, json_response, read_body, request_id_of
from lockgate.api.openapi import AUTH_ERRORS, errors, ok
from lockgate.auth import Principal
from lockgate.context import RequestContext
from lockgate.errors import GatewayError, ModelNotFound

router = APIRouter(tags=["OpenAI-compatible"])
# The inference POSTs are declared in api/routes.py (served by api/front.py, with this `serve`).


async def serve(request: Request, endpoint: str) -> Response:
    """One inference request: read the bounded body, run the pipeline, encode its outcome."""
    gateway = request.app.state.gateway
    ctx = RequestContext(request_id=request_id_of(request), endpoint=endpoint, client=client_address(request))
    try:
        raw = await read_body(request, gateway.config.server.max_body_bytes)
    except GatewayError as err:
        return encode(gateway.pipeline.fail(ctx, err))
    return encode(await gateway.pipeline.handle(ctx, raw, request.headers))


def _model_object(route: Any) -> dict[str, Any]:
    owned_by = route.group.owned_by or route.upstreams[0].config.provider
    return {"id": route.name, "object": "model", "created": route.created, "owned_by": owned_by}


@router.get(
    "/v1/models",
    summary="List the models this caller may use",
    responses={**ok(sm.ModelList, ex.MODEL_LIST), **errors(*AUTH_ERRORS)},
)
async def list_models(request: Request, principal: Principal = Depends(authenticate)) -> Response:
    gateway = request.app.state.gateway
    routes = [r for r in gateway.router.routes.values() if principal.allows(r.name)]
    if "anthropic-version" in request.headers:
        # An Anthropic client (Claude Code's model discovery): its list shape, the public names as ids.
        return json_response(orjson.dumps(_anthropic_model_list(routes)))
    data = [_model_object(r) for r in routes]
    return json_response(orjson.dumps({"object": "list", "data": data}))


def _anthropic_model_list(routes: list[Any]) -> dict[str, Any]:
    data = [
        {
            "type": "model",
            "id": r.name,
            "display_name": r.name,
            "created_at": datetime.fromtimestamp(r.created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        for r in routes
    ]
    return {
        "data": data,
        "has_more": False,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }


@router.get(
    "/v1/models/{model_id:path}",
    summary="Retrieve a model",
    responses={**ok(sm.Model, ex.MODEL), **errors(404, *AUTH_ERRORS)},
)
async def get_model(model_id: str, request: Request, principal: Principal = Depends(authenticate)) -> Response:
    route = request.app.state.gateway.router.get(model_id)
    if route is None or not principal.allows(model_id):
        raise ModelNotFound(model_id)
    return json_response(orjson.dumps(_model_object(route)))
