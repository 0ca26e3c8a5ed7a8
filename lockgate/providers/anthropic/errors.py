"""Anthropic error types, mapped to the gateway's error vocabulary.

Anthropic names its errors by ``error.type``; the HTTP status of a response
and the type agree, but an ``error`` event inside a stream (after HTTP 200)
carries only the type, so the type is what we map.
"""

from __future__ import annotations

from typing import Any

from lockgate.errors import GatewayError, ProviderBadResponse, from_upstream_status

# error.type -> the HTTP status Anthropic documents for it. from_upstream_status
# then turns 5xx into 502 (retryable), 529 into 503 (retryable), 429 into 429.
ERROR_STATUS: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


def error_from_event(payload: Any, what: str) -> GatewayError:
    """The error for a stream ``error`` event: ``{"type":"error","error":{"type","message"}}``."""
    err = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(err, dict):
        return ProviderBadResponse(f"The upstream {what} sent a malformed error event.")
    etype = err.get("type") if isinstance(err.get("type"), str) else None
    message = err.get("message") if isinstance(err.get("message"), str) else None
    status = ERROR_STATUS.get(etype or "", 500)
    return from_upstream_status(status, message or f"The upstream {what} failed mid-stream ({etype}).", type=etype)
