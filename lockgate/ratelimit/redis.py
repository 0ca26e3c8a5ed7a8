"""The Redis limiter: every check-and-charge is one Lua script, so replicas share one truth.

The script keeps each window as a hash: bucket index -> amount, plus ``t``
(the running total), ``e`` (the oldest bucket still holding something) and
``l`` (the newest bucket charged). It uses Redis' own clock unless a test
injects one. A Redis that is down or slow never hangs a request: sockets have
short timeouts, redis-py's retries are off, and after a failure the limiter
fails fast for a moment instead of paying the timeout again on every request.
Corrections (token reconciliation) go through a bounded queue to one task.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, Sequence

import structlog
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from lockgate.ratelimit.base import BackendUnavailable, Decision, Window

log = structlog.get_logger("lockgate.ratelimit")

_SLIDE = """
local now = tonumber(ARGV[1])
if now < 0 then
  local clock = redis.call('TIME')
  now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
end

-- Drop what left the window; returns total, oldest bucket (b + 1 when empty), current bucket, newest.
local function slide(key, nb, size)
  local v = redis.call('HMGET', key, 't', 'e', 'l')
  local t, e, l = tonumber(v[1]) or 0, tonumber(v[2]), tonumber(v[3]) or 0
  local b = math.max(math.floor(now / size), l)
  local cutoff = b - nb
  if e == nil or t <= 0 or l < cutoff then
    if e ~= nil then redis.call('DEL', key) end
    return 0, b + 1, b, 0
  end
  local e0 = e
  if e < cutoff then
    for j = e, cutoff - 1 do
      local x = redis.call('HGET', key, j)
      if x then
        t = t - tonumber(x)
        redis.call('HDEL', key, j)
      end
    end
    e = cutoff
  end
  while e <= b and redis.call('HEXISTS', key, e) == 0 do e = e + 1 end
  if t <= 0 or e > b then
    redis.call('DEL', key)
    return 0, b + 1, b, 0
  end
  if e ~= e0 then redis.call('HSET', key, 't', t, 'e', e) end
  return t, e, b, l
end
"""

# KEYS: one per window. ARGV: now_ms (negative: Redis' clock), then per window limit, window_ms, bucket_ms, amount.
# Returns {allowed, now, refused index (1-based, 0 if none), retry_ms, used..., reset_ms...}.
ACQUIRE = _SLIDE + """
local n = #KEYS
local total, first, cur, last, nb, size, limit, amount = {}, {}, {}, {}, {}, {}, {}, {}
for i = 1, n do
  local a = 1 + (i - 1) * 4
  limit[i] = tonumber(ARGV[a + 1])
  size[i] = tonumber(ARGV[a + 3])
  nb[i] = math.floor(tonumber(ARGV[a + 2]) / size[i])
  amount[i] = tonumber(ARGV[a + 4])
  total[i], first[i], cur[i], last[i] = slide(KEYS[i], nb[i], size[i])
end
local function answer(allowed, refused, retry)
  local out = {allowed, now, refused, retry}
  for i = 1, n do out[4 + i] = total[i] end
  for i = 1, n do
    if first[i] <= cur[i] then out[4 + n + i] = (first[i] + nb[i] + 1) * size[i] - now else out[4 + n + i] = 0 end
  end
  return out
end
for i = 1, n do
  if total[i] + amount[i] > limit[i] then
    local retry = nb[i] * size[i]
    if amount[i] <= limit[i] then
      -- walk from the oldest bucket until enough has left (bounded: day windows stop early)
      local over = total[i] + amount[i] - limit[i]
      local j, steps = first[i], 0
      while j < cur[i] and steps < 64 do
        local x = redis.call('HGET', KEYS[i], j)
        if x then
          over = over - tonumber(x)
          if over <= 0 then break end
        end
        j, steps = j + 1, steps + 1
      end
      retry = math.max(1, (j + nb[i] + 1) * size[i] - now)
    end
    return answer(0, i, retry)
  end
end
for i = 1, n do
  if amount[i] > 0 then
    redis.call('HINCRBY', KEYS[i], cur[i], amount[i])
    total[i] = total[i] + amount[i]
    if first[i] > cur[i] then first[i] = cur[i] end
    redis.call('HSET', KEYS[i], 't', total[i], 'e', first[i], 'l', math.max(last[i], cur[i]))
    redis.call('PEXPIRE', KEYS[i], (nb[i] + 2) * size[i])
  end
end
return answer(1, 0, 0)
"""

# KEYS: one per correction. ARGV: now_ms, then per key window_ms, bucket_ms, charged bucket, delta.
ADJUST = _SLIDE + """
for i = 1, #KEYS do
  local a = 1 + (i - 1) * 4
  local size = tonumber(ARGV[a + 2])
  local nb = math.floor(tonumber(ARGV[a + 1]) / size)
  local target, delta = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  local key = KEYS[i]
  local t, e, b, l = slide(key, nb, size)
  local live = target >= b - nb and target <= b and redis.call('HEXISTS', key, target) == 1
  if not live and delta > 0 then target, live = b, true end
  if live and delta ~= 0 then
    local v = redis.call('HINCRBY', key, target, delta)
    if v <= 0 then
      delta = delta - v
      redis.call('HDEL', key, target)
    end
    t = t + delta
    if t <= 0 then
      redis.call('DEL', key)
    else
      if target < e then e = target end
      redis.call('HSET', key, 't', t, 'e', e, 'l', math.max(l, target))
      redis.call('PEXPIRE', key, (nb + 2) * size)
    end
  end
end
return 1
"""

Clock = Callable[[], float]  # milliseconds


class RedisLimiter:
    def __init__(
        self,
        url: str,
        timeout_s: float = 0.25,
        clock: Clock | None = None,
        queue_size: int = 10_000,
        breaker_s: float = 0.5,
    ) -> None:
        self._redis = Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),  # redis-py retries 10 times with backoff by default: a hang
            health_check_interval=0,
        )
        self._timeout_s = timeout_s * 2
        self._acquire = self._redis.register_script(ACQUIRE)
        self._adjust = self._redis.register_script(ADJUST)
        self._clock = clock
        self._breaker_s = breaker_s
        self._down_until = 0.0
        self._queue: asyncio.Queue[tuple[list[str], list[Any]] | None] = asyncio.Queue(maxsize=queue_size)
        self._task: asyncio.Task[None] | None = None
        self.errors = 0  # back-end failures (acquire and adjust)
        self.dropped = 0  # corrections dropped because the queue was full or Redis failed

    def _now(self) -> int:
        return int(self._clock()) if self._clock is not None else -1

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._drain(), name="lockgate-ratelimit-adjust")

    async def acquire(self, windows: Sequence[Window], amounts: Sequence[int]) -> Decision:
        if time.monotonic() < self._down_until:
            raise BackendUnavailable("redis marked down")
        args: list[Any] = [self._now()]
        for w, amount in zip(windows, amounts):
            args += (w.limit, w.window_ms, w.bucket_ms, amount)
        try:
            async with asyncio.timeout(self._timeout_s):
                out = await self._acquire(keys=[w.key for w in windows], args=args)
        except (RedisError, OSError, TimeoutError) as err:
            self.errors += 1
            self._down_until = time.monotonic() + self._breaker_s
            raise BackendUnavailable(type(err).__name__) from None
        n = len(windows)
        return Decision(
            allowed=out[0] == 1,
            now_ms=int(out[1]),
            used=[int(x) for x in out[4 : 4 + n]],
            reset_ms=[int(x) for x in out[4 + n : 4 + 2 * n]],
            refused=int(out[2]) - 1,
            retry_after_ms=int(out[3]),
        )

    def adjust(self, windows: Sequence[Window], charged_ms: int, deltas: Sequence[int]) -> None:
        keys: list[str] = []
        args: list[Any] = []
        for w, delta in zip(windows, deltas):
            if delta:
                keys.append(w.key)
                args += (w.window_ms, w.bucket_ms, charged_ms // w.bucket_ms, delta)
        if not keys:
            return
        try:
            self._queue.put_nowait((keys, args))
        except asyncio.QueueFull:
            self.dropped += 1

    async def _drain(self) -> None:
        """Send queued corrections, many per script call."""
        while True:
            item = await self._queue.get()
            taken, stop = 1, item is None
            keys: list[str] = []
            args: list[Any] = []
            while item is not None:
                keys += item[0]
                args += item[1]
                if len(keys) >= 256 or self._queue.empty():
                    break
                item = self._queue.get_nowait()
                taken += 1
                stop = item is None
            if keys:
                try:
                    async with asyncio.timeout(self._timeout_s):
                        await self._adjust(keys=keys, args=[self._now(), *args])
                except (RedisError, OSError, TimeoutError) as err:
                    self.errors += 1
                    self.dropped += len(keys)
                    log.warning("ratelimit_adjust_failed", error=type(err).__name__, corrections=len(keys))
            for _ in range(taken):
                self._queue.task_done()
            if stop:
                return

    async def flush(self, timeout_s: float = 5.0) -> None:
        """Wait until every queued correction has been sent (tests, shutdown)."""
        await asyncio.wait_for(self._queue.join(), timeout_s)

    async def aclose(self) -> None:
        if self._task is not None:
            try:
                self._queue.put_nowait(None)
                await asyncio.wait_for(self._task, 2.0)
            except (asyncio.QueueFull, asyncio.TimeoutError):
                self._task.cancel()
            self._task = None
        await self._redis.aclose()
