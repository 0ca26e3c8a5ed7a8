"""Budgets: a key's or a team's spend for its period, checked before each request.

Spend is counted in integer nano-dollars (exact sums, exact boundaries) per
(scope, id, period), for every period kind at once, so a budget set or changed
later counts from the right total. Counters live in memory (one process) or in
Redis (``budgets.backend: redis``, shared by replicas, on the gateway's one
Redis client), and are rebuilt from the daily roll-ups at start-up (in Redis
only where no replica has them already). Reading them is the one Redis call a
budgeted request waits on: it is bounded by the client's deadline and fails
fast while Redis is marked down, and ``redis.on_error`` decides what follows.

Each request *reserves* its estimated cost at admission: its prompt (the rate
limits' estimate) at the model group's highest input price, plus the output it
may ask for (``max_tokens`` / ``max_completion_tokens``, else
``budgets.default_output_tokens``) at the group's highest output price. It is
refused once spend plus what requests in flight hold reaches the budget (and,
with ``budgets.strict``, when its own estimate would pass it), and its hold is swapped for its real cost when it ends (the
pipeline's one ``_finish``: answers, errors, streams, cancels). In Redis the
check-and-hold is one Lua script (the one round trip a budgeted request waits
on, as the read it replaces was) and each hold expires after
``budgets.reservation_ttl_s``, so a gateway that dies cannot keep it. The
overshoot is then bounded by how far real costs pass their estimates, not by
concurrency: at most the last admitted request's cost (none with ``strict``)
plus the amount real costs pass their estimates (docs/usage.md). Spend for a deployment whose price is unknown is
not counted (and is flagged on its records).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import sqlalchemy as sa
import structlog
from redis.exceptions import NoScriptError

from lockgate.auth.keys import BUDGET_PERIODS
from lockgate.background import stop_task
from lockgate.errors import BudgetExceeded, BudgetUnavailable
from lockgate.ratelimit.admission import estimate_parts
from lockgate.usage.tables import usage_daily

if TYPE_CHECKING:
    from lockgate.redis_client import SharedRedis

log = structlog.get_logger("lockgate.usage.budgets")

NANO = 1_000_000_000
# Redis expiry per period kind: the counter outlives its period by a day.
_TTL_S = {"daily": 2 * 86400, "weekly": 8 * 86400, "monthly": 32 * 86400, "total": None}
_LOAD_CHUNK = 1000  # counters per round trip when rebuilding


def to_nanos(usd: float) -> int:
    return round(usd * NANO)


def period_start(period: str, today: dt.date) -> dt.date | None:
    if period == "daily":
        return today
    if period == "weekly":
        return today - dt.timedelta(days=today.weekday())  # ISO weeks start on Monday
    if period == "monthly":
        return today.replace(day=1)
    return None  # total


def period_end(period: str, today: dt.date) -> dt.date | None:
    start = period_start(period, today)
    if start is None:
        return None
    if period == "daily":
        return start + dt.timedelta(days=1)
    if period == "weekly":
        return start + dt.timedelta(days=7)
    return (start.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def counter_key(scope: str, ident: str, period: str, today: dt.date) -> str:
    start = period_start(period, today)
    return f"{scope}:{ident}:{period}:{start.isoformat() if start else 'all'}"


def utc_today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


class Hold(NamedTuple):
    """What one admitted request reserved (on its RequestContext until it ends)."""

    holds: list[str]  # one per budgeted scope: "hold:key:<id>", "hold:team:<name>"
    lease: str  # the request id
    nanos: int


class Refusal(NamedTuple):
    which: int  # the budget that said no
    spent: int
    held: int  # by other requests in flight


class Counters(Protocol):
    async def get(self, keys: list[str]) -> list[int]: ...

    async def reserve(
        self, keys: list[str], holds: list[str], limits: list[int], lease: str, nanos: int, strict: bool = False
    ) -> Refusal | None:
        """Atomically: refuse if a budget has no room for ``nanos`` more, else hold it on every scope."""
        ...

    def settle(self, hold: Hold, increments: list[tuple[str, str, int]]) -> None:
        """Give the hold back and add the real cost; never blocks."""
        ...

    def add(self, increments: list[tuple[str, str, int]]) -> None: ...  # (key, period, nanos)

    async def load(self, baseline: dict[str, tuple[str, int]]) -> None: ...

    async def aclose(self) -> None: ...


def _no_room(spent: int, held: int, nanos: int, limit: int, strict: bool) -> bool:
    # Refused once spend and holds reach the budget; strict: also when this request's estimate would pass it.
    return spent + held >= limit or (strict and spent + held + nanos > limit)


class MemoryCounters:
    """One process: no await between check and hold, so no lock; every hold is settled in-process."""

    def __init__(self) -> None:
        self.values: dict[str, int] = {}
        self.held: dict[str, int] = {}

    async def get(self, keys: list[str]) -> list[int]:
        return [self.values.get(k, 0) for k in keys]

    async def reserve(
        self, keys: list[str], holds: list[str], limits: list[int], lease: str, nanos: int, strict: bool = False
    ) -> Refusal | None:
        for i, (key, hold, limit) in enumerate(zip(keys, holds, limits)):
            spent, held = self.values.get(key, 0), self.held.get(hold, 0)
            if _no_room(spent, held, nanos, limit, strict):
                return Refusal(i, spent, held)
        if nanos:
            for hold in holds:
                self.held[hold] = self.held.get(hold, 0) + nanos
        return None

    def settle(self, hold: Hold, increments: list[tuple[str, str, int]]) -> None:
        if hold.nanos:
            for name in hold.holds:
                left = self.held.get(name, 0) - hold.nanos
                if left > 0:
                    self.held[name] = left
                else:
                    self.held.pop(name, None)
        self.add(increments)

    def add(self, increments: list[tuple[str, str, int]]) -> None:
        for key, _period, nanos in increments:
            self.values[key] = self.values.get(key, 0) + nanos

    async def load(self, baseline: dict[str, tuple[str, int]]) -> None:
        for key, (_period, nanos) in baseline.items():
            self.values[key] = self.values.get(key, 0) + nanos

    async def aclose(self) -> None:
        return None


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


def _budgets(principal: Any) -> list[tuple[str, str, float, str]]:
    """(scope, id, max_usd, period) for the key's budget and its team's, where set."""
    out = []
    if principal.max_budget_usd is not None:
        out.append(("key", principal.key_id, principal.max_budget_usd, principal.budget_period or "total"))
    # The team's budget comes from its record (auth/teams.py), copied onto the Principal.
    if principal.team and principal.team_max_budget_usd is not None:
        out.append(("team", principal.team, principal.team_max_budget_usd, principal.team_budget_period or "total"))
    return out


class BudgetAdmission:
    """The pipeline's budget stage (pipeline.Admission)."""

    def __init__(
        self,
        counters: Counters,
        on_backend_error: str = "allow",
        today: Any = utc_today,
        default_output_tokens: int = 1024,
        strict: bool = False,
    ) -> None:
        self.counters = counters
        self.on_backend_error = on_backend_error
        self.today = today  # a clock tests can set
        self.default_output_tokens = default_output_tokens
        self.strict = strict
        self._rates: dict[str, tuple[float, float] | None] = {}  # per model group, from start-up prices

    def estimate(self, ctx: Any) -> int:
        """Nano-dollars this request may cost: its prompt and the output it may ask for, at the group's highest prices."""
        route = ctx.route
        if route is None:
            return 0
        if route.name in self._rates:
            rates = self._rates[route.name]
        else:
            prices = [u.price for u in route.upstreams if u.price is not None]
            # USD per Mtok is nano-dollars per 1000 tokens
            rates = (max(p.input for p in prices) * 1000, max(p.output for p in prices) * 1000) if prices else None
            self._rates[route.name] = rates
        if rates is None:
            return 0  # no deployment has a price: its spend is not counted either
        prompt, output = estimate_parts(ctx.endpoint, ctx.body or {}, self.default_output_tokens)
        return round(prompt * rates[0] + output * rates[1])

    async def admit(self, ctx: Any) -> None:
        principal = ctx.principal
        if principal is None:
            return
        budgets = _budgets(principal)
        if not budgets:
            return  # no budget: no estimate, no round trip
        today = self.today()
        keys = [counter_key(scope, ident, period, today) for scope, ident, _, period in budgets]
        holds = [f"hold:{scope}:{ident}" for scope, ident, _, _ in budgets]
        limits = [to_nanos(max_usd) for _, _, max_usd, _ in budgets]
        nanos = self.estimate(ctx)
        try:
            refused = await self.counters.reserve(keys, holds, limits, ctx.request_id, nanos, self.strict)
        except Exception as err:
            log.warning("budget_backend_error", error=str(err) or type(err).__name__)
            if self.on_backend_error == "allow":
                return  # admitted unreserved; its cost is still added when it ends
            raise BudgetUnavailable("The budget could not be checked; try again shortly.", retry_after_s=1.0) from None
        if refused is not None:
            scope, ident, max_usd, period = budgets[refused.which]
            raise BudgetExceeded(_message(scope, ident, refused.spent, max_usd, period, today, refused.held, nanos))
        ctx.budget_hold = Hold(holds, ctx.request_id, nanos)

    def settle(self, ctx: Any, record: Any) -> None:
        hold, ctx.budget_hold = ctx.budget_hold, None
        cost = getattr(record, "cost_usd", None)
        principal = ctx.principal
        if principal is None:
            return
        increments = []
        if cost:
            nanos = to_nanos(cost)
            today = self.today()
            increments = [
                (counter_key(scope, ident, period, today), period, nanos)
                for scope, ident in _scopes(principal)
                for period in BUDGET_PERIODS
            ]
        if hold is not None:
            self.counters.settle(hold, increments)  # the hold given back and the real cost added, at once
        elif increments:
            self.counters.add(increments)

    async def rebuild(self, engine: Any) -> int:
        """Load every key's and team's spend per period kind from the daily roll-ups."""
        today = self.today()
        baseline: dict[str, tuple[str, int]] = {}
        async with engine.connect() as conn:
            for period in BUDGET_PERIODS:
                start = period_start(period, today)
                for scope, column in (("key", usage_daily.c.key_id), ("team", usage_daily.c.team)):
                    query = sa.select(column, sa.func.sum(usage_daily.c.cost_usd)).where(column != "").group_by(column)
                    if start is not None:
                        query = query.where(usage_daily.c.day >= start)
                    for ident, total in await conn.execute(query):
                        if total:
                            baseline[counter_key(scope, ident, period, today)] = (period, to_nanos(total))
        await self.counters.load(baseline)
        return len(baseline)

    async def aclose(self) -> None:
        await self.counters.aclose()


def _scopes(principal: Any) -> Iterable[tuple[str, str]]:
    yield "key", principal.key_id
    if principal.team:
        yield "team", principal.team


def _message(
    scope: str, ident: str, nanos: int, max_usd: float, period: str, today: dt.date, held: int = 0, estimate: int = 0
) -> str:
    who = "This API key" if scope == "key" else f"This key's team `{ident}`"
    end = period_end(period, today)
    when = f"It resets at {end.isoformat()}T00:00:00Z." if end else "It does not reset; ask an admin to raise it."
    label = "total" if period == "total" else period
    limit = f"${max_usd:.2f}" if max_usd >= 0.01 or max_usd == 0 else f"${max_usd:.4f}"
    if nanos >= to_nanos(max_usd):  # spent alone
        return f"{who} has used its {label} budget: ${nanos / NANO:.4f} spent of {limit}. {when}"
    if nanos + held >= to_nanos(max_usd):
        return (
            f"{who}'s {label} budget is held by requests in flight: ${nanos / NANO:.4f} spent and "
            f"${held / NANO:.4f} reserved of {limit}. Try again when they finish. {when}"
        )
    return (
        f"This request's estimated cost (up to ${estimate / NANO:.4f}) would pass {who[0].lower() + who[1:]}'s "
        f"{label} budget: ${nanos / NANO:.4f} spent and ${held / NANO:.4f} held by requests in flight, of "
        f"{limit}. Lower max_tokens, or wait for requests in flight to finish."
    )
