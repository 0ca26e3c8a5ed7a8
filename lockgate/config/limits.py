"""Policy: rate limits and spend budgets."""

from __future__ import annotations

from pydantic import Field

from lockgate.config.base import Backend, _Strict
from lockgate.config.models import ModelLimits


class RateLimitDefaults(_Strict):
    rpm: int | None = Field(default=None, ge=1, description="Requests per minute")
    tpm: int | None = Field(default=None, ge=1, description="Tokens per minute")
    max_parallel_requests: int | None = Field(default=None, ge=1, description="Requests in flight at once, per key")


class RateLimitConfig(_Strict):
    backend: Backend = Field(default="memory", description="The limiter only; budgets and cool-downs say their own")
    defaults: RateLimitDefaults = Field(default=RateLimitDefaults(), description="Limits for a key that sets none")
    default_max_tokens: int = Field(default=1024, ge=0, description="Token estimate when max_tokens is absent")
    parallel_lease_s: float = Field(
        default=900.0, gt=0, description="Redis: a request's max_parallel_requests slot expires after this (crashed gateway)"
    )
    # Limits shared by every key of a team or a user.
    teams: dict[str, ModelLimits] = Field(default_factory=dict)
    users: dict[str, ModelLimits] = Field(default_factory=dict, description="Limits shared by every key of a user")


class BudgetsConfig(_Strict):
    backend: Backend = Field(default="memory", description="redis: spend counters shared by every replica")
    default_output_tokens: int = Field(default=1024, ge=0, description="Output tokens reserved when a request sets no max_tokens")
    reservation_ttl_s: float = Field(
        default=900.0, gt=0, description="Redis: a request's reserved cost expires after this (crashed gateway)"
    )
    strict: bool = Field(
        default=False, description="Refuse a request whose own estimated cost would pass the budget (not only a used one)"
    )
