"""The gateway's closed error vocabulary and the one function that renders it.

Every failure a client can see is one of these classes, named by who is at
fault (its fault domain, the first word of its ``kind``):

    GatewayError
    ├── caller_*    the client's mistake: bad request, bad key, unknown model, too large, conflict
    ├── policy_*    a rule said no: model not allowed, rate limited, budget exhausted
    ├── provider_*  the upstream failed: its own 4xx, rate limit, overload, 5xx, timeout, garbage
    │               (bad_response; truncated and bad_usage are kinds of it)
    └── gateway_*   the gateway itself: its bug, a back-end of its own down, a feature not there

A subclass that does not declare its ``kind`` (so its domain) fails at import,
and GatewayError itself cannot be raised: metrics and alerts count by kind.
Each instance knows its HTTP status, its OpenAI ``type``/``code``/``param``,
whether the router may retry it and how long the caller should wait.
``render`` turns one into status, headers and body in the caller's dialect.
This module imports no web framework.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from lockgate import redaction


def redact(text: str) -> str:
    """Mask configured secrets (by value), their masked echoes, and anything shaped like a key or token."""
    return redaction.redact(text)


Domain = Literal["caller", "policy", "provider", "gateway"]
DOMAINS: tuple[Domain, ...] = ("caller", "policy", "provider", "gateway")


class GatewayError(Exception):
    """Base of every error the gateway renders to a client (abstract: raise a subclass)."""

    kind: str  # <domain>_<what>, declared by every subclass
    domain: Domain  # derived from kind at class creation
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
        if self.__class__ is GatewayError:
            raise TypeError("GatewayError is abstract: raise the subclass that names the fault domain")
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

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        kind = cls.__dict__.get("kind")
        domain = kind.split("_", 1)[0] if isinstance(kind, str) else None
        if domain not in DOMAINS:
            raise TypeError(f"{cls.__name__} must declare kind = '<domain>_<what>' with a domain of {', '.join(DOMAINS)}")
        cls.domain = domain  # type: ignore[assignment]

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
        super().__init__(f"The model `{model}` does not exist or you do not have access to it.", param="model")


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


class HeadersTooLarge(GatewayError):
    """The request line and headers passed server.max_header_bytes (answered by lockgate/http_server.py)."""

    kind = "caller_headers_too_large"
    status = 431
    type = "invalid_request_error"
    code = "request_headers_too_large"


class RequestTimeout(GatewayError):
    """The client was slower than server.header_timeout_s or body_timeout_s to send its request."""

    kind = "caller_request_timeout"
    status = 408
    type = "invalid_request_error"
    code = "request_timeout"


class Conflict(GatewayError):
    """The request contradicts the state of what it names (a team that exists, a revoked key)."""

    kind = "caller_conflict"
    status = 409
    type = "invalid_request_error"
    code = "conflict"


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


class CorsRefused(GatewayError):
    """A CORS preflight from an origin, or asking for a method or header, that server.cors does not allow."""

    kind = "policy_cors_refused"
    status = 403
    type = "invalid_request_error"
    code = "cors_not_allowed"


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


class ProviderResponseTooLarge(ProviderError):
    """The upstream's answer (or stream) passed the deployment's max_response_bytes (max_stream_bytes).

    The operator's cap, not a passing fault: not retried (the same request would cost as much again
    elsewhere), not counted against the deployment's health.
    """

    kind = "provider_response_too_large"
    status = 502
    type = "server_error"
    code = "upstream_response_too_large"
    retryable = False


class ProviderTruncated(ProviderBadResponse):
    """The upstream's answer stopped short: a body cut before its length, a reset, a stream without its end."""

    kind = "provider_truncated"
    code = "upstream_truncated"


class ProviderBadUsage(ProviderBadResponse):
    """The upstream reported usage that cannot be true (negative, not a number, beyond any context window).

    Refused rather than charged: a nonsense count would price the request at nonsense, and one
    past the store's integer range would make its whole batch unwritable.
    """

    kind = "provider_bad_usage"
    code = "upstream_bad_usage"


# --- gateway_*: our own bug ------------------------------------------------------------


class GatewayInternal(GatewayError):
    """Our own bug."""

    kind = "gateway_internal"
    status = 500
    type = "server_error"
    code = "internal_error"


class NotImplementedHere(GatewayError):
    """A route this deployment of the gateway does not serve (e.g. key admin without a key store)."""

    kind = "gateway_not_implemented"
    status = 501
    type = "server_error"
    code = "not_configured"


class KeyStoreUnavailable(GatewayError):
    kind = "gateway_key_store_unavailable"
    status = 503
    type = "server_error"
    code = "key_store_unavailable"


class LimiterUnavailable(GatewayError):
    """redis.on_error: deny, and the limiter's back-end is down."""

    kind = "gateway_limiter_unavailable"
    status = 503
    type = "server_error"
    code = "rate_limiter_unavailable"


class BudgetUnavailable(GatewayError):
    """redis.on_error: deny, and the budget counters could not be read: no policy said no."""

    kind = "gateway_budget_unavailable"
    status = 503
    type = "server_error"
    code = "budget_unavailable"


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


# --- rendering ------------------------------------------------------------------------------

Dialect = Literal["openai"]  # other dialects render through their ingress (ingress/base.py: error)


@dataclass(frozen=True, slots=True)
class Rendered:
    """An error as the client receives it."""

    status: int
    headers: dict[str, str]
    body: bytes  # the error object (JSON); a stream carries the same object as an SSE event


def _openai_body(err: GatewayError) -> bytes:
    return orjson.dumps({"error": {"message": err.message, "type": err.type, "param": err.param, "code": err.code}})


_BODIES: dict[str, Callable[[GatewayError], bytes]] = {"openai": _openai_body}


def render(err: GatewayError, dialect: Dialect = "openai", headers: dict[str, str] | None = None) -> Rendered:
    """The one rendering of an error: its status, headers (``headers`` first, then the error's own,
    Retry-After from the error on a 429/503) and body in the caller's dialect."""
    out = {**headers, **err.headers} if headers else dict(err.headers)
    if err.retry_after_s is not None and err.status in (429, 503):
        out.setdefault("retry-after", str(max(1, round(err.retry_after_s))))
    return Rendered(err.status, out, _BODIES[dialect](err))


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
