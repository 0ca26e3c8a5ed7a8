"""The gateway's closed error vocabulary and its OpenAI JSON rendering.

Every failure a client can see is one of these classes, named by who is at
fault:

    GatewayError
    ├── caller_*    the client's mistake: bad request, bad key, unknown model, too large
    ├── policy_*    a rule said no: model not allowed, rate limited, budget exhausted
    ├── provider_*  the upstream failed: its own 4xx, rate limit, overload, 5xx, timeout, garbage
    └── gateway_*   our own bug

Each instance knows its HTTP status, its OpenAI ``type``/``code``/``param`` and
whether the router may retry it. This module imports no web framework.
"""

from __future__ import annotations

from typing import Any

import orjson

from lockgate import redaction


def redact(text: str) -> str:
    """Mask configured secrets (by value), their masked echoes, and anything shaped like a key or token."""
    return redaction.redact(text)


class GatewayError(Exception):
    """Base of every error the gateway renders to a client."""

    kind: str = "gateway_internal"
    status: int = 500
    type: str = "server_error"
    code: str | None = None
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        type: str | None = None,
        retryable: bool | None = None,
        headers: dict[str, str] | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        if type is not None:
            self.type = type
        if retryable is not None:
            self.retryable = retryable
        self.headers: dict[str, str] = dict(headers or {})
        # Seconds the upstream (or a limiter) asked us to wait; the router honours it.
        self.retry_after_s = retry_after_s

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def to_json(self) -> bytes:
        return orjson.dumps(self.body())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status}, {self.message!r})"


# --- caller_*: the client's mistake -------------------------------------------------


class InvalidRequest(GatewayError):
    kind = "caller_invalid_request"
    status = 400
    type = "invalid_request_error"


class AuthenticationFailed(GatewayError):
    kind = "caller_authentication"
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class ModelNotFound(GatewayError):
    kind = "caller_model_not_found"
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"

    def __init__(self, model: str) -> None:
        super().__init__(
            f"The model `{model}` does not exist or you do not have access to it.", param="model"
        )


class NotFound(GatewayError):
    kind = "caller_not_found"
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class MethodNotAllowed(GatewayError):
    kind = "caller_method_not_allowed"
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class PayloadTooLarge(GatewayError):
    kind = "caller_payload_too_large"
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


# --- policy_*: a rule said no ----------------------------------------------------------


class PermissionDenied(GatewayError):
    kind = "policy_permission_denied"
    status = 403
    type = "invalid_request_error"
    code = "model_not_allowed"


class RateLimited(GatewayError):
    kind = "policy_rate_limited"
    status = 429
    type = "requests"
    code = "rate_limit_exceeded"


class BudgetExceeded(GatewayError):
    kind = "policy_budget_exceeded"
    status = 429
    type = "insufficient_quota"
    code = "insufficient_quota"


class TooManyAuthFailures(GatewayError):
    kind = "policy_auth_throttled"
    status = 429
    type = "requests"
    code = "too_many_authentication_failures"


# --- provider_*: the upstream failed ---------------------------------------------------


class ProviderError(GatewayError):
    """An upstream answered with an error; status and message are what the client should see."""

    kind = "provider_error"
    status = 502
    type = "upstream_error"


class ProviderRateLimited(ProviderError):
    kind = "provider_rate_limited"
    status = 429
    type = "requests"
    code = "rate_limit_exceeded"
    retryable = True


class ProviderOverloaded(ProviderError):
    kind = "provider_overloaded"
    status = 503
    type = "server_error"
    code = "upstream_overloaded"
    retryable = True


class ProviderServerError(ProviderError):
    kind = "provider_server_error"
    status = 502
    type = "server_error"
    code = "upstream_error"
    retryable = True


class ProviderUnavailable(ProviderError):
    """The upstream could not be reached at all (connection refused, DNS, reset)."""

    kind = "provider_unavailable"
    status = 503
    type = "server_error"
    code = "upstream_unavailable"
    retryable = True


class ProviderTimeout(ProviderError):
    kind = "provider_timeout"
    status = 504
    type = "server_error"
    code = "upstream_timeout"
    retryable = True


class ProviderBadResponse(ProviderError):
    """The upstream answered 2xx with something that is not its documented format."""

    kind = "provider_bad_response"
    status = 502
    type = "server_error"
    code = "upstream_bad_response"
    retryable = True


# --- gateway_*: our own bug ------------------------------------------------------------


class GatewayInternal(GatewayError):
    kind = "gateway_internal"
    status = 500
    type = "server_error"
    code = "internal_error"


# Upstream HTTP statuses the router may retry (the upstream may answer differently next time).
RETRYABLE_UPSTREAM_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})


def from_upstream_status(
    status: int,
    message: str,
    *,
    type: str | None = None,
    code: str | None = None,
    param: str | None = None,
    retry_after_s: float | None = None,
) -> GatewayError:
    """The error a client should see for an upstream HTTP error status.

    4xx are the caller's own mistakes seen by the upstream: passed on with their
    status and message. 429 stays 429; 5xx become 502, overload 503, timeouts 504.
    """
    # Upstreams echo provider keys back, whole or masked ("Incorrect API key provided: gsk_abc***xyz"):
    # every upstream word that reaches the client is redacted, the short fields too.
    message = redact(message)
    type, code, param = _redacted(type), _redacted(code), _redacted(param)
    kwargs: dict[str, Any] = {"param": param, "retry_after_s": retry_after_s}
    if status == 429:
        return ProviderRateLimited(message, **kwargs)
    if status in (503, 529):
        return ProviderOverloaded(message, **kwargs)
    if status in (408, 504):
        return ProviderTimeout(message, **kwargs)
    if status >= 500:
        return ProviderServerError(message, **kwargs)
    return ProviderError(
        message,
        status=status,
        type=type or "invalid_request_error",
        code=code,
        retryable=status in RETRYABLE_UPSTREAM_STATUSES,
        **kwargs,
    )


def _redacted(text: str | None) -> str | None:
    return redact(text) if text else text


def parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait from `retry-after-ms` or `retry-after` (seconds; HTTP dates ignored)."""
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            return None
    return None
