"""The gateway's errors in Anthropic's dialect: ``{"type":"error","error":{"type","message"},"request_id"}``.

Used on /v1/messages, for Lockgate's own refusals and for upstream errors alike.
The status follows Anthropic's table (overload is 529 there, where the OpenAI
dialect says 503); the message is kept as it was, because Claude Code recovers by
matching upstream wording ("prompt is too long"). This module imports no web framework.
"""

from __future__ import annotations

import orjson

from lockgate.errors import GatewayError
from lockgate.providers.anthropic.errors import ERROR_STATUS

# The inverse of the provider's error.type -> status table.
TYPE_FOR_STATUS: dict[int, str] = {status: etype for etype, status in ERROR_STATUS.items()}
TYPE_FOR_STATUS.update({405: "invalid_request_error", 422: "invalid_request_error", 409: "invalid_request_error"})

# Error kinds whose Anthropic status differs from the one the OpenAI dialect uses.
_STATUS_FOR_KIND: dict[str, int] = {"provider_overloaded": 529}


def anthropic_status(err: GatewayError) -> int:
    return _STATUS_FOR_KIND.get(err.kind, err.status)


def anthropic_type(err: GatewayError, status: int | None = None) -> str:
    # By status alone: an upstream Anthropic error's status already matches its type (billing_error is
    # 402, …), and our own errors carry OpenAI types (a 404 there is an invalid_request_error).
    status = anthropic_status(err) if status is None else status
    if status in TYPE_FOR_STATUS:
        return TYPE_FOR_STATUS[status]
    return "invalid_request_error" if status < 500 else "api_error"


def render_error(err: GatewayError, request_id: str | None = None) -> tuple[int, bytes]:
    """The status and body a Messages client should see for this error."""
    status = anthropic_status(err)
    body: dict[str, object] = {"type": "error", "error": {"type": anthropic_type(err, status), "message": err.message}}
    if request_id:
        body["request_id"] = request_id
    return status, orjson.dumps(body)
