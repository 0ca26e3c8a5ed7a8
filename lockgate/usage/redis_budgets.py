"""Budget counters in Redis (``budgets.backend: redis``), shared by replicas: see lockgate/usage/budgets.py.

A module of its own so that a gateway without Redis never imports the client.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import TYPE_CHECKING, Any

import structlog
from redis.exceptions import NoScriptError

from lockgate.background import stop_task
from lockgate.usage.budgets import Hold, Refusal

if TYPE_CHECKING:
    from lockgate.redis_client import SharedRedis

log = structlog.get_logger("lockgate.usage.budgets")

# Redis expiry per period kind: the counter outlives its period by a day.
_TTL_S = {"daily": 2 * 86400, "weekly": 8 * 86400, "monthly": 32 * 86400, "total": None}
_LOAD_CHUNK = 1000  # counters per round trip when rebuilding

# KEYS: per budget its spend counter, its hold hash (field per lease, and t: their total) and its
# lease set (lease -> expiry ms). ARGV: lease, ttl_ms, nanos, strict (0|1), then per budget its limit in nanos.
# Returns {0} when held, or {index (1-based), spent, held} when refused (nothing held).
RESERVE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local lease, ttl, nanos, strict = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4] == '1'
local n = #KEYS / 3
for i = 1, n do
  local h, z = KEYS[3 * i - 1], KEYS[3 * i]
  -- holds of requests that never ended (their gateway died): given back here
  for _, gone in ipairs(redis.call('ZRANGEBYSCORE', z, '-inf', now, 'LIMIT', 0, 64)) do
    local x = redis.call('HGET', h, gone)
    if x then
      redis.call('HINCRBY', h, 't', -tonumber(x))
      redis.call('HDEL', h, gone)
    end
    redis.call('ZREM', z, gone)
  end
  local spent = tonumber(redis.call('GET', KEYS[3 * i - 2]) or '0')
  local held = math.max(0, tonumber(redis.call('HGET', h, 't') or '0'))
  local limit = tonumber(ARGV[4 + i])
  if spent + held >= limit or (strict and spent + held + nanos > limit) then
    return {i, spent, held}
  end
end
if nanos > 0 then
  for i = 1, n do
    local h, z = KEYS[3 * i - 1], KEYS[3 * i]
    redis.call('HSET', h, lease, nanos)
    redis.call('HINCRBY', h, 't', nanos)
    redis.call('ZADD', z, now + ttl, lease)
    redis.call('PEXPIRE', h, 2 * ttl)
    redis.call('PEXPIRE', z, 2 * ttl)
  end
end
return {0}
"""

# KEYS: per scope its hold hash and lease set, then the spend counters. ARGV: lease, scopes,
# then per counter nanos and ttl_s (0: none). Gives the hold back and adds the real cost at once.
SETTLE = """
local lease, ns = ARGV[1], tonumber(ARGV[2])
for i = 1, ns do
  local h = KEYS[2 * i - 1]
  local x = redis.call('HGET', h, lease)
  if x then
    redis.call('HINCRBY', h, 't', -tonumber(x))
    redis.call('HDEL', h, lease)
  end
  redis.call('ZREM', KEYS[2 * i], lease)
end
for j = 2 * ns + 1, #KEYS do
  local a = 3 + (j - 2 * ns - 1) * 2
  redis.call('INCRBY', KEYS[j], ARGV[a])
  if tonumber(ARGV[a + 1]) > 0 then redis.call('EXPIRE', KEYS[j], ARGV[a + 1]) end
end
return 1
"""
_RESERVE_SHA = hashlib.sha1(RESERVE.encode()).hexdigest()


class RedisCounters:
    """Counters in Redis; increments and settlements are queued and sent in pipelined batches off the request path."""

    def __init__(self, redis: "SharedRedis", prefix: str | None = None, hold_ttl_s: float = 900.0) -> None:
        self._shared = redis  # the gateway's one client: its owner closes it
        self.redis = redis.client
        self.prefix = redis.key("budget") if prefix is None else prefix
        self._hold_ttl_ms = int(hold_ttl_s * 1000)
        # (hold or None, increments): a settlement, or spend alone (no budget held anything)
        self._queue: asyncio.Queue[tuple[Hold | None, list[tuple[str, str, int]]]] = asyncio.Queue(maxsize=10_000)
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="lockgate-budget-redis")

    async def get(self, keys: list[str]) -> list[int]:
        """On the request path: bounded by the client's deadline, RedisUnavailable when it fails."""
        async with self._shared.call() as client:
            values = await client.mget([self.prefix + k for k in keys])
        return [int(v) if v is not None else 0 for v in values]

    async def reserve(
        self, keys: list[str], holds: list[str], limits: list[int], lease: str, nanos: int, strict: bool = False
    ) -> Refusal | None:
        """On the request path, one round trip (it replaces the read it was): bounded like ``get``."""
        p = self.prefix
        names: list[str] = []
        for key, hold in zip(keys, holds):
            names += (p + key, p + hold, p + hold + ":z")
        args = [lease, self._hold_ttl_ms, nanos, 1 if strict else 0, *limits]
        async with self._shared.call() as client:
            try:
                out = await client.evalsha(_RESERVE_SHA, len(names), *names, *args)
            except NoScriptError:  # Redis restarted or flushed its scripts
                out = await client.eval(RESERVE, len(names), *names, *args)
        if int(out[0]) == 0:
            return None
        return Refusal(int(out[0]) - 1, int(out[1]), int(out[2]))

    def settle(self, hold: Hold, increments: list[tuple[str, str, int]]) -> None:
        self._put((hold, increments))

    def add(self, increments: list[tuple[str, str, int]]) -> None:
        if increments:
            self._put((None, increments))

    def _put(self, item: tuple[Hold | None, list[tuple[str, str, int]]]) -> None:
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.dropped += len(item[1])  # a hold left behind expires with its lease

    async def load(self, baseline: dict[str, tuple[str, int]]) -> None:
        items = list(baseline.items())
        for i in range(0, len(items), _LOAD_CHUNK):  # each chunk one bounded round trip
            async with self._shared.call(request_path=False) as client:
                async with client.pipeline(transaction=False) as pipe:
                    for key, (period, nanos) in items[i : i + _LOAD_CHUNK]:
                        pipe.set(self.prefix + key, nanos, nx=True, ex=_TTL_S[period])
                    await pipe.execute()

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty() and len(batch) < 500:
                batch.append(self._queue.get_nowait())
            await self._send(batch)

    async def _send(self, batch: list[tuple[Hold | None, list[tuple[str, str, int]]]]) -> None:
        p = self.prefix
        try:
            async with self._shared.call(request_path=False) as client:
                async with client.pipeline(transaction=False) as pipe:
                    for hold, increments in batch:
                        if hold is None or not hold.nanos:
                            for key, period, nanos in increments:
                                pipe.incrby(p + key, nanos)
                                ttl = _TTL_S[period]
                                if ttl:
                                    pipe.expire(p + key, ttl)
                            continue
                        names: list[str] = []
                        for name in hold.holds:
                            names += (p + name, p + name + ":z")
                        args: list[Any] = [hold.lease, len(hold.holds)]
                        for key, period, nanos in increments:
                            names.append(p + key)
                            args += (nanos, _TTL_S[period] or 0)
                        # EVAL, not EVALSHA: off the request path, and a restarted Redis needs no reload
                        pipe.eval(SETTLE, len(names), *names, *args)
                    await pipe.execute()
        except Exception as err:
            self.dropped += sum(len(increments) for _, increments in batch)
            log.warning("budget_redis_failed", error=str(err) or type(err).__name__, items=len(batch))

    async def aclose(self) -> None:
        task, self._task = self._task, None
        await stop_task(task)
        pending = []
        while not self._queue.empty():
            pending.append(self._queue.get_nowait())
        if pending:
            await self._send(pending)
