"""The one Redis client of a gateway, shared by every feature whose backend is redis.

The limiter, the budget counters, the shared cool-downs and the readiness probe
use one connection pool with one set of timeouts (the ``redis:`` section):

- redis-py's retries are off: its default retries a failed call with backoff,
  which holds a request for seconds behind a Redis that is down or stuck;
- every call is bounded as a whole by ``deadline_s`` (connect + answer), so a
  Redis that accepts connections and never answers is cut off there, not only
  one that refuses them (socket timeouts alone bound each read, and a call can
  make several: the connection's handshake, then the command);
- a call that finds the pool full waits for a free connection within the same bound;
- after a failure on the request path, the request path fails fast for
  ``breaker_s`` instead of paying the timeout again on every request, for
  every feature at once (the limiter's failure spares the budget check its wait).

What a request does when Redis fails is one policy, ``redis.on_error``
(``deny`` is ``self.deny``), which each feature on the request path applies.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from lockgate.config import Config, RedisConfig

# What a failed call raises: redis-py's errors, socket errors, and our own deadline.
REDIS_ERRORS = (RedisError, OSError, TimeoutError)
BREAKER_S = 0.5


class RedisUnavailable(Exception):
    """Redis did not answer in time, or failed a moment ago; the caller's failure policy decides."""


class SharedRedis:
    def __init__(self, config: RedisConfig, *, breaker_s: float = BREAKER_S) -> None:
        self.config = config
        self.deadline_s = config.connect_timeout_s + config.timeout_s
        self.deny = config.on_error == "deny"
        self.breaker_s = breaker_s
        pool = BlockingConnectionPool.from_url(
            config.url,
            max_connections=config.max_connections,
            timeout=self.deadline_s,  # waiting for a free connection
            socket_timeout=config.timeout_s,
            socket_connect_timeout=config.connect_timeout_s,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,  # no extra PING round trip before a command
        )
        self.client = Redis(connection_pool=pool)
        self._down_until = 0.0
        self.failures = 0  # request-path calls that failed, every feature together

    def key(self, feature: str) -> str:
        """The key prefix of one feature: ``{redis.key_prefix}{feature}:``."""
        return f"{self.config.key_prefix}{feature}:"

    @property
    def down(self) -> bool:
        """A call failed less than ``breaker_s`` ago: the request path should not wait on Redis now."""
        return time.monotonic() < self._down_until

    def failed(self) -> None:
        """A call on the request path failed: the request path fails fast for a moment."""
        self.failures += 1
        self._down_until = time.monotonic() + self.breaker_s

    @asynccontextmanager
    async def call(self, *, request_path: bool = True) -> AsyncIterator[Redis]:
        """One bounded use of the client: ``RedisUnavailable`` when marked down, late or failing.

        On the request path a call refuses at once while the breaker is open, and
        its failure opens it. Background loops and the probe (``request_path=False``)
        always try, and leave the breaker to what requests saw: each feature counts
        its own failures, and one that a background loop hit is not one a request waited on.
        """
        if request_path and self.down:
            raise RedisUnavailable("redis marked down")
        try:
            async with asyncio.timeout(self.deadline_s):
                yield self.client
        except REDIS_ERRORS as err:
            if request_path:
                self.failed()
            raise RedisUnavailable(type(err).__name__) from None

    async def ping(self) -> None:
        """A real round trip whatever the breaker says (the readiness probe)."""
        async with self.call(request_path=False) as client:
            await client.ping()

    async def aclose(self) -> None:
        await self.client.aclose(close_connection_pool=True)


def build_redis(config: Config) -> SharedRedis | None:
    """The gateway's one Redis client, or None when no feature's backend is redis."""
    if not config.redis_users():
        return None
    return SharedRedis(config.redis)
