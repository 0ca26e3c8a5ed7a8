"""The OpenAPI 3.1 document: built once from the routes' own declarations, served at /openapi.json and .yaml.

Routes declare their errors with `errors(...)` (FastAPI's `responses=`) and their
security with `CALLER`/`ADMIN`; `build` adds what every route shares (the Error
schema, x-request-id, the security schemes) and drops the framework's 422,
which the gateway never answers (a bad body is a 400 with the Error schema).
"""

from __future__ import annotations

from typing import Any

import orjson
import yaml
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import Response

from lockgate import __version__

REF = "#/components/schemas/{model}"

# The codes each status carries (errors.py is their source); listed in the spec's description.
CODES: dict[int, tuple[str, str]] = {
    400: (
        "Bad request: a missing or invalid parameter, a body that is not a JSON object",
        "invalid_value, missing_required_parameter, previous_response_not_found, or null",
    ),
    401: ("No credentials, or an unknown, revoked or expired key or token", "invalid_api_key"),
    403: (
        "The caller may not do this (a model outside the key's allowlist, an admin route)",
        "model_not_allowed, admin_required, forbidden",
    ),
    404: ("No such model (or not one this key may use), or no such object", "model_not_found, not_found"),
    409: ("The request conflicts with the object's state", "conflict, key_revoked, team_exists"),
    413: ("The body passes server.max_body_bytes", "request_too_large"),
    429: (
        "A rate limit or budget refused it, an upstream is rate limited, or too many failed logins from this address",
        "rate_limit_exceeded, insufficient_quota, too_many_authentication_failures",
    ),
    500: ("A gateway bug; answered without a trace, logged with the request id", "internal_error"),
    501: ("The feature is not configured on this gateway", "not_configured"),
    502: ("The upstream failed or answered something unreadable", "upstream_error, upstream_bad_response"),
    503: (
        "Every deployment is cooling down or overloaded, or a store the request needs is unreachable",
        "upstream_overloaded, upstream_unavailable, key_store_unavailable, rate_limiter_unavailable, budget_unavailable",
    ),
    504: ("The upstream did not answer in time", "upstream_timeout"),
    529: ("(Messages dialect) the upstream is overloaded: Anthropic's status for it", "overloaded_error"),
}

_EXAMPLE_ERRORS: dict[int, tuple[str, str, str | None, str | None]] = {
    400: ("Missing required parameter: 'messages'.", "invalid_request_error", "messages", "missing_required_parameter"),
    401: ("Invalid API key.", "authentication_error", None, "invalid_api_key"),
    403: ("This key is not allowed to use the model `gpt-4o`.", "permission_error", "model", "model_not_allowed"),
    404: (
        "The model `gpt-5-turbo` does not exist or you do not have access to it.",
        "invalid_request_error",
        "model",
        "model_not_found",
    ),
    409: ("A revoked key cannot be rotated.", "invalid_request_error", None, "key_revoked"),
    413: ("The request body passes the limit of 8388608 bytes.", "invalid_request_error", None, "request_too_large"),
    429: (
        "Rate limit reached for requests per minute (limit 60). Retry after 2s.",
        "rate_limit_error",
        None,
        "rate_limit_exceeded",
    ),
    500: ("The gateway failed to process this request.", "server_error", None, "internal_error"),
    501: ("No key store is configured.", "server_error", None, "not_configured"),
    502: ("The upstream answered 500: internal error.", "upstream_error", None, "upstream_error"),
    503: ("Every deployment of `gpt-4o-mini` is cooling down.", "upstream_error", None, "upstream_unavailable"),
    504: ("The upstream did not answer within 60s.", "timeout_error", None, "upstream_timeout"),
}


def _header(description: str, schema: dict[str, Any] | None = None, required: bool = False) -> dict[str, Any]:
    return {"description": description, "required": required, "schema": schema or {"type": "string"}}


REQUEST_ID = _header(
    "This request's id (also in the gateway's logs and usage records)", {"type": "string", "pattern": "^req_"}, True
)
RETRY_AFTER = {
    "retry-after": _header("Seconds to wait before trying again (429 and 503)", {"type": "string", "pattern": "^[0-9]+$"}),
    "retry-after-ms": _header("Milliseconds to wait, when a rate limit refused", {"type": "string", "pattern": "^[0-9]+$"}),
}
_LIMIT = "the tightest limit of this kind on the key, its team or the model; present when one applies"
RATE_LIMIT_HEADERS = {
    f"x-ratelimit-{what}-{kind}": _header(f"{desc} ({_LIMIT})", schema)
    for kind in ("requests", "tokens")
    for what, desc, schema in (
        ("limit", f"The window's limit of {kind}", {"type": "string", "pattern": "^[0-9]+$"}),
        ("remaining", f"{kind.capitalize()} left in the window", {"type": "string", "pattern": "^[0-9]+$"}),
        ("reset", "Until the window frees capacity, as a Go duration (`1s`, `6m0s`)", None),
    )
}
SERVED_HEADERS = {
    "x-lockgate-deployment": _header("The deployment that answered (`<model>/<index>` or the deployment's id)"),
    "x-lockgate-attempts": _header(
        "Upstream attempts made, retries and fallbacks included", {"type": "string", "pattern": "^[0-9]+$"}
    ),
    **RATE_LIMIT_HEADERS,
}

# Security requirements, by who may call a route.
CALLER: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}]
ADMIN: list[dict[str, list[str]]] = [{"adminBearer": []}]


def error_example(status: int) -> dict[str, Any]:
    message, etype, param, code = _EXAMPLE_ERRORS[status]
    return {"error": {"message": message, "type": etype, "param": param, "code": code}}


def anthropic_example(status: int) -> dict[str, Any]:
    from lockgate.errors_anthropic import TYPE_FOR_STATUS

    message = "Overloaded" if status == 529 else _EXAMPLE_ERRORS[status][0]
    etype = TYPE_FOR_STATUS.get(status, "invalid_request_error" if status < 500 else "api_error")
    return {"type": "error", "error": {"type": etype, "message": message}, "request_id": "req_5f0c2d9a8b7e6f1a2b3c4d5e"}


def errors(*statuses: int, anthropic: bool = False) -> dict[int | str, dict[str, Any]]:
    """FastAPI `responses=` for these error statuses, each with the shared Error schema (or the
    Messages dialect's) and its codes; 429 and 503 say Retry-After."""
    from lockgate.api.spec_models import AnthropicError, Error

    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        what, codes = CODES[status]
        entry: dict[str, Any] = {"description": f"{what}. Codes: {codes}.", "model": AnthropicError if anthropic else Error}
        example = anthropic_example(status) if anthropic else error_example(status)
        entry["content"] = {"application/json": {"example": example}}
        if status in (429, 503, 529):
            entry["headers"] = dict(RETRY_AFTER)
        out[status] = entry
    return out


AUTH_ERRORS = (401, 429, 500, 503)  # every authenticated route: bad credentials, login throttle, key store down
ADMIN_ERRORS = (*AUTH_ERRORS, 403, 501)  # and: not an admin; no key store configured


def json_body(model: type[BaseModel] | str, example: Any, description: str = "") -> dict[str, Any]:
    """`openapi_extra` for a body read by the handler itself (so the framework never answers 422)."""
    name = model if isinstance(model, str) else model.__name__
    content = {"application/json": {"schema": {"$ref": REF.format(model=name)}, "example": example}}
    return {"requestBody": {"required": True, "description": description, "content": content}}


def sse(event_schema: str, framing: str, example: str, done: bool = False) -> dict[str, Any]:
    """The text/event-stream media type of a streamed answer: the schema is one event's fields. `done`: the
    stream ends with `data: [DONE]` (OpenAI chat and completions). A failure mid-stream is an Error event."""
    payload: dict[str, Any] = {
        "type": "string",
        "contentMediaType": "application/json",
        "contentSchema": {"anyOf": [{"$ref": REF.format(model=event_schema)}, {"$ref": REF.format(model="Error")}]},
    }
    data: dict[str, Any] = {"anyOf": [{"const": "[DONE]"}, payload]} if done else payload
    data["description"] = f"A `{event_schema}` as JSON" + (", or `[DONE]` at the end" if done else "")
    return {
        "schema": {
            "type": "object",
            "description": f"One server-sent event. {framing}",
            "properties": {"event": {"type": "string"}, "data": data, "id": {"type": "string"}},
            "required": ["data"],
        },
        "example": example,
    }


DESCRIPTION = (
    """\
An OpenAI-compatible LLM gateway: one endpoint for OpenAI, Anthropic and mock deployments, with virtual keys,
budgets, rate limits and exact usage accounting. It also speaks Anthropic's Messages API at `/v1/messages`.

**Authentication.** `Authorization: Bearer <token>` (or `x-api-key: <token>`, as Anthropic clients send it), where
the token is the master key, a virtual key (`lg-…`, made with `POST /admin/keys`) or a JWT from the configured
issuer. `/admin/*` needs the master key or a JWT with the admin role. `/health/*` and `/metrics` need none.

**Requests.** The inference bodies are validated where the gateway relies on them; every other field is passed
to the upstream untouched, so new provider parameters keep working. A body the gateway cannot accept is a 400 with
the Error object naming the parameter; the gateway never answers 422.

**Errors.** Every error is `{"error": {"message", "type", "param", "code"}}` (OpenAI's shape), except on
`/v1/messages`, where it is Anthropic's `{"type": "error", "error": {"type", "message"}, "request_id"}`.
The status and codes:

| status | meaning | codes |
| --- | --- | --- |
"""
    + "".join(f"| {s} | {w} | {c} |\n" for s, (w, c) in CODES.items())
    + """
A stream that fails after its first byte ends with one `data: {"error": {...}}` event (the Error object).

**Headers.** Every response carries `x-request-id`. Inference answers carry `x-lockgate-deployment`,
`x-lockgate-attempts` and, when a rate limit applies, OpenAI's `x-ratelimit-*`; 429 and 503 carry `retry-after`.
"""
)


def _strip_422(spec: dict[str, Any]) -> None:
    for item in spec.get("paths", {}).values():
        for operation in item.values():
            if isinstance(operation, dict):
                operation.get("responses", {}).pop("422", None)
    schemas = spec.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)


def _headers_by_reference(spec: dict[str, Any]) -> None:
    """Every response gets x-request-id; each known header is one component, referenced."""
    known = {"x-request-id": REQUEST_ID, **RETRY_AFTER, **SERVED_HEADERS}
    for item in spec["paths"].values():
        for operation in item.values():
            for response in operation.get("responses", {}).values():
                headers = response.setdefault("headers", {})
                headers["x-request-id"] = REQUEST_ID
                for name, value in headers.items():
                    if known.get(name) == value:
                        headers[name] = {"$ref": f"#/components/headers/{name}"}
    spec["components"]["headers"] = known


def _callers_may_use_either_header(spec: dict[str, Any]) -> None:
    # deps.py's bearer scheme names the route's callers; x-api-key is accepted wherever it is.
    for item in spec["paths"].values():
        for operation in item.values():
            security = operation.get("security")
            if security and any("adminBearer" in s for s in security):
                operation["security"] = ADMIN
            elif security == [{"bearer": []}]:
                operation["security"] = CALLER


def build(app: FastAPI, extra_models: list[type[BaseModel]]) -> dict[str, Any]:
    """The spec for this app's routes; `extra_models` are schemas referenced by name (request bodies read
    by their handlers, stream events)."""
    spec = get_openapi(
        title="Lockgate",
        version=__version__,
        openapi_version="3.1.0",
        summary="An OpenAI-compatible LLM gateway",
        description=DESCRIPTION,
        routes=app.routes,
        license_info={"name": "Apache-2.0", "identifier": "Apache-2.0"},
        servers=[{"url": "/", "description": "This gateway"}],
    )
    _strip_422(spec)
    components = spec.setdefault("components", {})
    _, defs = models_json_schema([(m, "validation") for m in extra_models], ref_template=REF)
    components.setdefault("schemas", {}).update(defs.get("$defs", {}))
    components["securitySchemes"] = {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "The master key, a virtual key (`lg-…`) or a JWT from the configured issuer",
        },
        "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key", "description": "The same token, Anthropic-style"},
        "adminBearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "The master key, or a JWT with the admin role (admin routes)",
        },
    }
    _headers_by_reference(spec)
    _callers_may_use_either_header(spec)
    spec["tags"] = [
        {"name": "OpenAI-compatible", "description": "Chat, completions, embeddings, models, Responses"},
        {"name": "Anthropic-compatible", "description": "The Messages API, for the Anthropic SDK and Claude Code"},
        {"name": "Usage", "description": "Requests, tokens and spend from the usage records"},
        {"name": "Admin", "description": "Virtual keys and teams (master key or admin JWT)"},
        {"name": "Health", "description": "Liveness and readiness probes"},
        {"name": "Operations", "description": "Prometheus metrics"},
    ]
    return spec


def install(app: FastAPI, extra_models: list[type[BaseModel]]) -> None:
    """Serve the spec: built on first use and kept (the routes do not change after start-up)."""
    cache: dict[str, bytes] = {}

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build(app, extra_models)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    async def as_json(request: Request) -> Response:
        if "json" not in cache:
            cache["json"] = orjson.dumps(openapi())
        return Response(cache["json"], media_type="application/json")

    async def as_yaml(request: Request) -> Response:
        if "yaml" not in cache:
            cache["yaml"] = to_yaml(openapi()).encode()
        return Response(cache["yaml"], media_type="application/yaml")

    app.add_route("/openapi.json", as_json, include_in_schema=False)
    app.add_route("/openapi.yaml", as_yaml, include_in_schema=False)


def to_yaml(spec: dict[str, Any]) -> str:
    # Through JSON first: plain types only, so the YAML is the same document as the JSON.
    return yaml.safe_dump(orjson.loads(orjson.dumps(spec)), sort_keys=False, allow_unicode=True, width=120)


def ok(model: type[BaseModel] | None, example: Any, description: str = "Success", status: int = 200) -> dict[int | str, Any]:
    """FastAPI `responses=` for a JSON success with its schema and example."""
    entry: dict[str, Any] = {"description": description, "content": {"application/json": {"example": example}}}
    if model is not None:
        entry["model"] = model
    return {status: entry}


def query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter a handler reads itself (documented; the handler answers 400 for a bad one)."""
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}
