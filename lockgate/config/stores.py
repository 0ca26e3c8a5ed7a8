"""The outside services Lockgate keeps state in: its database and the shared Redis."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from lockgate.config.base import _Strict


class DatabaseConfig(_Strict):
    url: str = Field(default="sqlite:///lockgate.db", description="sqlite:///path or postgresql://user@host:5432/db")


class RedisConfig(_Strict):
    """The one Redis client (lockgate/redis_client.py) of every feature whose backend is redis."""

    url: str = Field(default="redis://127.0.0.1:6379/0", description="redis://, rediss:// or unix://")
    timeout_s: float = Field(default=0.25, gt=0, description="Longest wait for Redis' answer to one call")
    connect_timeout_s: float = Field(default=0.25, gt=0, description="Longest wait to open a connection")
    max_connections: int = Field(default=64, ge=1, description="Connection pool size; a call waits for a free one")
    # Keys start with this (then rl:, budget:, cd:), so gateways can share a Redis or keep apart.
    key_prefix: str = "lockgate:"
    # When Redis fails on the request path: allow (fail open: unmetered, counted) or deny (503).
    on_error: Literal["allow", "deny"] = "allow"

    @field_validator("url")
    @classmethod
    def _redis_scheme(cls, url: str) -> str:
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return url
