"""The Redis limiter: every check-and-charge is one Lua script, so replicas share one truth.

The script keeps each window as a hash: bucket index -> amount, plus ``t``
(the running total), ``e`` (the oldest bucket still holding something) and
``l`` (the newest bucket charged). It uses Redis' own clock unless a test
injects one. A Redis that is down or hangs never holds a request past the
shared client's deadline (lockgate/redis_client.py: one client, retries off,
one bound per round trip), and after a failure every feature on Redis fails
fast for a moment instead of paying the timeout again on every request.
Corrections (token reconciliation) wait in a bounded buffer for the same task.
A parallel window (``max_parallel_requests``) is a sorted set of leases (member:
the request id, score: when it expires), checked and taken in the same script;
its release goes with the sender's next pipeline at once, ahead of any acquire.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import structlog
from redis.exceptions import NoScriptError, ResponseError

from lockgate.background import Ticker
from lockgate.ratelimit.base import PARALLEL_RETRY_MS, BackendUnavailable, Decision, Window
from lockgate.redis_client import REDIS_ERRORS, SharedRedis

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

# KEYS: one per window. ARGV: now_ms (negative: Redis' clock), the lease (request id), then per window
# limit, window_ms, bucket_ms, amount; bucket_ms 0 marks a parallel window (window_ms: its lease).
# Returns {allowed, now, refused index (1-based, 0 if none), retry_ms, used..., reset_ms...}.
ACQUIRE = (
    _SLIDE
    + """
local n = #KEYS
local lease = ARGV[2]
local total, first, cur, last, nb, size, limit, amount, ttl = {}, {}, {}, {}, {}, {}, {}, {}, {}
for i = 1, n do
  local a = 2 + (i - 1) * 4
  limit[i] = tonumber(ARGV[a + 1])
  size[i] = tonumber(ARGV[a + 3])
  amount[i] = tonumber(ARGV[a + 4])
  if size[i] == 0 then
    ttl[i] = tonumber(ARGV[a + 2])
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)  -- leases of requests that never ended
    total[i], first[i], cur[i], last[i], nb[i] = redis.call('ZCARD', KEYS[i]), 1, 0, 0, 0
  else
    nb[i] = math.floor(tonumber(ARGV[a + 2]) / size[i])
    total[i], first[i], cur[i], last[i] = slide(KEYS[i], nb[i], size[i])
  end
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
    if size[i] == 0 then
      retry = """
    + str(PARALLEL_RETRY_MS)
    + """
    elseif amount[i] <= limit[i] then
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
  if size[i] == 0 then
    redis.call('ZADD', KEYS[i], now + ttl[i], lease)
    redis.call('PEXPIRE', KEYS[i], ttl[i])
    total[i] = total[i] + 1
  elseif amount[i] > 0 then
    redis.call('HINCRBY', KEYS[i], cur[i], amount[i])
    total[i] = total[i] + amount[i]
    if first[i] > cur[i] then first[i] = cur[i] end
    redis.call('HSET', KEYS[i], 't', total[i], 'e', first[i], 'l', math.max(last[i], cur[i]))
    redis.call('PEXPIRE', KEYS[i], (nb[i] + 2) * size[i])
  end
end
return answer(1, 0, 0)
"""
)

# KEYS: one per correction. ARGV: now_ms, then per key window_ms, bucket_ms, charged bucket, delta
# (a parallel window: bucket_ms 0, the lease in place of the bucket, delta -1 to release it).
ADJUST = (
    _SLIDE
    + """
for i = 1, #KEYS do
  local a = 1 + (i - 1) * 4
  local size = tonumber(ARGV[a + 2])
  if size == 0 then
    if tonumber(ARGV[a + 4]) < 0 then redis.call('ZREM', KEYS[i], ARGV[a + 3]) end
  else
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
end
return 1
"""
)

Clock = Callable[[], float]  # milliseconds
_ERRORS = REDIS_ERRORS
_MAX_ADJUST_KEYS = 512  # corrections per script call
_ADJUST_DELAY_S = 0.05


def _sha(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()


class RedisLimiter:
    """An uncontended acquire calls its script directly; under contention acquires share round trips.

    When no round trip is in progress and nobody waits, an acquire is one EVALSHA
    from the request's own task (no hand-off: the cheap path at low concurrency).
    Otherwise it waits in memory for the sender task, which sends everything
    pending as one pipeline (one EVALSHA per acquire, so each stays atomic, plus
    one for all the corrections): under load a round trip is shared by every
    request waiting for it. Corrections never block a request: they go with the
    sender's next pipeline, at most ``_ADJUST_DELAY_S`` after they were made.
    """

    def __init__(self, redis: SharedRedis, clock: Clock | None = None, queue_size: int = 10_000) -> None:
        self._shared = redis  # the gateway's one client: its owner closes it
        self._redis = redis.client
        self._timeout_s = redis.deadline_s  # one round trip, connection included
        self._clock = clock
        self._queue_size = queue_size
        self._acquires: list[tuple[list[str], list[Any], asyncio.Future[Any]]] = []
        self._adjust_keys: list[str] = []
        self._adjust_args: list[Any] = []
        self._sending = 0  # round trips in progress, direct or batched
        self._idle = asyncio.Event()
        self._idle.set()
        self._sender = Ticker(self._drain, None, "lockgate-ratelimit-redis", error_event="ratelimit_send_failed")
        self._timer: asyncio.TimerHandle | None = None
        self._urgent = False  # a parallel slot's release is waiting to be sent
        self.errors = 0  # back-end failures (acquire and adjust)
        self.dropped = 0  # corrections dropped because the buffer was full or Redis failed

    def _now(self) -> int:
        return int(self._clock()) if self._clock is not None else -1

    async def start(self) -> None:
        self._sender.start()

    async def acquire(self, windows: Sequence[Window], amounts: Sequence[int], lease: str = "") -> Decision:
        if self._shared.down:  # a call by any feature failed a moment ago
            raise BackendUnavailable("redis marked down")
        keys = [w.key for w in windows]
        args: list[Any] = [self._now(), lease]
        for w, amount in zip(windows, amounts):
            args += (w.limit, w.window_ms, w.bucket_ms, amount)
        if self._sending or self._acquires or self._urgent:
            # (A released parallel slot waits to be sent: this acquire goes after it, in one round trip.)
            # Contended: ride the sender's next pipeline with everyone else waiting.
            if not self._sender.running:
                self._sender.start()
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._acquires.append((keys, args, future))
            self._sender.wake()
            out = await future
        else:
            out = await self._acquire_direct(keys, args)
        n = len(windows)
        return Decision(
            allowed=out[0] == 1,
            now_ms=int(out[1]),
            used=[int(x) for x in out[4 : 4 + n]],
            reset_ms=[int(x) for x in out[4 + n : 4 + 2 * n]],
            refused=int(out[2]) - 1,
            retry_after_ms=int(out[3]),
        )

    async def _acquire_direct(self, keys: list[str], args: list[Any]) -> Any:
        try:
            out = (await self._roundtrip([(keys, args)], [], []))[0]
        except _ERRORS as err:
            self._failed(err)
            raise BackendUnavailable(type(err).__name__) from None
        if isinstance(out, Exception):
            raise BackendUnavailable(type(out).__name__)
        return out

    def adjust(self, windows: Sequence[Window], charged_ms: int, deltas: Sequence[int], lease: str = "") -> None:
        for w, delta in zip(windows, deltas):
            if not delta:
                continue
            if len(self._adjust_keys) >= self._queue_size:
                self.dropped += 1  # (a parallel slot left behind expires with its lease)
                continue
            self._adjust_keys.append(w.key)
            if w.bucket_ms:
                self._adjust_args += (w.window_ms, w.bucket_ms, charged_ms // w.bucket_ms, delta)
            else:
                self._adjust_args += (w.window_ms, 0, lease, delta)
                self._urgent = True
        if self._urgent:
            # A freed slot must not wait 50 ms: the caller's next request may follow at once.
            self._flush_soon()
        elif self._adjust_keys and self._timer is None:
            # Corrections ride along with the next batched acquires, or leave within 50 ms.
            self._timer = asyncio.get_running_loop().call_later(_ADJUST_DELAY_S, self._flush_soon)

    def _flush_soon(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        if not self._sender.running:
            self._sender.start()
        self._sender.wake()

    async def _drain(self) -> None:
        """The sender's tick: send everything pending, one pipeline at a time."""
        self._idle.clear()
        try:
            while self._acquires or self._adjust_keys:
                acquires, self._acquires = self._acquires, []
                if acquires and self._shared.down:
                    # A round trip failed while these waited: they fail fast instead of paying it again.
                    _fail(acquires, BackendUnavailable("redis marked down"))
                    acquires = []
                    if not self._adjust_keys:
                        break
                keys, args = self._adjust_keys[:_MAX_ADJUST_KEYS], self._adjust_args[: _MAX_ADJUST_KEYS * 4]
                del self._adjust_keys[:_MAX_ADJUST_KEYS], self._adjust_args[: _MAX_ADJUST_KEYS * 4]
                self._urgent = bool(self._adjust_keys) and self._urgent
                await self._send(acquires, keys, args)
        finally:
            self._idle.set()

    async def _send(
        self, acquires: list[tuple[list[str], list[Any], asyncio.Future[Any]]], keys: list[str], args: list[Any]
    ) -> None:
        try:
            results = await self._roundtrip([(k, a) for k, a, _ in acquires], keys, args)
        except BaseException as err:  # whatever it was, no waiting request may hang on it
            _fail(acquires, BackendUnavailable(type(err).__name__))
            if not isinstance(err, Exception):
                raise  # cancelled (shutdown): the waiters are told, the cancellation goes on
            self._failed(err, len(keys))
            return
        if keys:  # the corrections went first (a released slot counts before any acquire after it)
            adjusted, results = results[0], results[1:]
            if isinstance(adjusted, Exception):
                self.errors += 1
                self.dropped += len(keys)
                log.warning("ratelimit_adjust_failed", error=type(adjusted).__name__, corrections=len(keys))
        for (_, _, future), result in zip(acquires, results):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(BackendUnavailable(type(result).__name__))
            else:
                future.set_result(result)

    def _failed(self, err: BaseException, corrections: int = 0) -> None:
        self.errors += 1
        self._shared.failed()
        if corrections:
            self.dropped += corrections
            log.warning("ratelimit_adjust_failed", error=type(err).__name__, corrections=corrections)

    async def _roundtrip(self, acquires: list[tuple[list[str], list[Any]]], keys: list[str], args: list[Any]) -> list[Any]:
        """One round trip (two if Redis lost the scripts): a result or an error per command, in order."""
        self._sending += 1
        try:
            results = await self._execute(acquires, keys, args)
            if any(isinstance(r, NoScriptError) for r in results):  # Redis restarted or flushed: load, then again
                async with asyncio.timeout(self._timeout_s):
                    await self._redis.script_load(ACQUIRE)
                    await self._redis.script_load(ADJUST)
                results = await self._execute(acquires, keys, args)
            return results
        finally:
            self._sending -= 1

    async def _execute(self, acquires: list[tuple[list[str], list[Any]]], keys: list[str], args: list[Any]) -> list[Any]:
        # EVALSHA directly: redis-py's Script objects cost a SCRIPT EXISTS round trip per pipeline.
        async with asyncio.timeout(self._timeout_s):
            if len(acquires) == 1 and not keys:
                akeys, aargs = acquires[0]
                try:  # one command: no pipeline object to build
                    return [await self._redis.evalsha(_ACQUIRE_SHA, len(akeys), *akeys, *aargs)]
                except ResponseError as err:  # as a pipeline would report it: the command's own error
                    return [err]
            pipe = self._redis.pipeline(transaction=False)
            if keys:
                pipe.evalsha(_ADJUST_SHA, len(keys), *keys, self._now(), *args)
            for akeys, aargs in acquires:
                pipe.evalsha(_ACQUIRE_SHA, len(akeys), *akeys, *aargs)
            return list(await pipe.execute(raise_on_error=False))

    async def flush(self, timeout_s: float = 5.0) -> None:
        """Wait until everything pending has been sent (tests, shutdown)."""
        if (self._acquires or self._adjust_keys) and not self._sender.running:
            self._sender.start()
        async with asyncio.timeout(timeout_s):
            while self._acquires or self._adjust_keys or not self._idle.is_set():
                self._sender.wake()
                await self._idle.wait()
                await asyncio.sleep(0)

    async def aclose(self) -> None:
        if self._sender.running:
            try:
                await self.flush(2.0)
            except TimeoutError:
                pass
        await self._sender.stop()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _fail(acquires: list[tuple[list[str], list[Any], asyncio.Future[Any]]], failure: BackendUnavailable) -> None:
    for _, _, future in acquires:
        if not future.done():
            future.set_exception(failure)


_ACQUIRE_SHA = _sha(ACQUIRE)
_ADJUST_SHA = _sha(ADJUST)
