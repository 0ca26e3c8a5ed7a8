"""Budgets: a key's or a team's spend for its period, checked before each request.

Spend is counted in integer nano-dollars (exact sums, exact boundaries) per
(scope, id, period), for every period kind at once, so a budget set or changed
later counts from the right total. Counters live in memory (one process) or in
Redis (``budgets.backend: redis``, shared by replicas, on the gateway's one
Redis client), and are rebuilt from the daily roll-ups at start-up (in Redis
only where no replica has them already). Reading them is the one Redis call a
budgeted request waits on: it is bounded by the client's deadline and fails
fast while Redis is marked down, and ``redis.on_error`` decides what follows.

A request is admitted while the spend is below the budget; its cost is added
when it ends. Requests in flight at the same time all see the same spend, so
the overshoot is at most the cost of the requests in flight (docs/usage.md).
Spend for a deployment whose price is unknown is not counted (and is flagged
on its records).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

import sqlalchemy as sa
import structlog

from lockgate.auth.keys import BUDGET_PERIODS
from lockgate.background import stop_task
from lockgate.errors import BudgetExceeded, BudgetUnavailable
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


class Counters(Protocol):
    async def get(self, keys: list[str]) -> list[int]: ...

    def add(self, increments: list[tuple[str, str, int]]) -> None: ...  # (key, period, nanos)

    async def load(self, baseline: dict[str, tuple[str, int]]) -> None: ...

    async def aclose(self) -> None: ...


class MemoryCounters:
    def __init__(self) -> None:
        self.values: dict[str, int] = {}

    async def get(self, keys: list[str]) -> list[int]:
        return [self.values.get(k, 0) for k in keys]

    def add(self, increments: list[tuple[str, str, int]]) -> None:
        for key, _period, nanos in increments:
            self.values[key] = self.values.get(key, 0) + nanos

    async def load(self, baseline: dict[str, tuple[str, int]]) -> None:
        for key, (_period, nanos) in baseline.items():
            self.values[key] = self.values.get(key, 0) + nanos

    async def aclose(self) -> None:
        return None


class RedisCounters:
    """Counters in Redis; increments are queued and sent in pipelined batches off the request path."""

    def __init__(self, redis: "SharedRedis", prefix: str | None = None) -> None:
        self._shared = redis  # the gateway's one client: its owner closes it
        self.redis = redis.client
        self.prefix = redis.key("budget") if prefix is None else prefix
        self._queue: asyncio.Queue[tuple[str, str, int]] = asyncio.Queue(maxsize=10_000)
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="lockgate-budget-redis")

    async def get(self, keys: list[str]) -> list[int]:
        """On the request path: bounded by the client's deadline, RedisUnavailable when it fails."""
        async with self._shared.call() as client:
            values = await client.mget([self.prefix + k for k in keys])
        return [int(v) if v is not None else 0 for v in values]

    def add(self, increments: list[tuple[str, str, int]]) -> None:
        for item in increments:
            try:
                self._queue.put_nowait(item)
            except asyncio.QueueFull:
                self.dropped += 1

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

    async def _send(self, batch: list[tuple[str, str, int]]) -> None:
        try:
            async with self._shared.call(request_path=False) as client:
                async with client.pipeline(transaction=False) as pipe:
                    for key, period, nanos in batch:
                        pipe.incrby(self.prefix + key, nanos)
                        ttl = _TTL_S[period]
                        if ttl:
                            pipe.expire(self.prefix + key, ttl)
                    await pipe.execute()
        except Exception as err:
            self.dropped += len(batch)
            log.warning("budget_redis_failed", error=str(err) or type(err).__name__, increments=len(batch))

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

    def __init__(self, counters: Counters, on_backend_error: str = "allow", today: Any = utc_today) -> None:
        self.counters = counters
        self.on_backend_error = on_backend_error
        self.today = today  # a clock tests can set

    async def admit(self, ctx: Any) -> None:
        principal = ctx.principal
        if principal is None:
            return
        budgets = _budgets(principal)
        if not budgets:
            return
        today = self.today()
        keys = [counter_key(scope, ident, period, today) for scope, ident, _, period in budgets]
        try:
            spent = await self.counters.get(keys)
        except Exception as err:
            log.warning("budget_backend_error", error=str(err) or type(err).__name__)
            if self.on_backend_error == "allow":
                return
            raise BudgetUnavailable("The budget could not be checked; try again shortly.", retry_after_s=1.0) from None
        for (scope, ident, max_usd, period), nanos in zip(budgets, spent):
            if nanos >= to_nanos(max_usd):
                raise BudgetExceeded(_message(scope, ident, nanos, max_usd, period, today))

    def settle(self, ctx: Any, record: Any) -> None:
        cost = getattr(record, "cost_usd", None)
        principal = ctx.principal
        if not cost or principal is None:
            return
        nanos = to_nanos(cost)
        today = self.today()
        increments = [
            (counter_key(scope, ident, period, today), period, nanos)
            for scope, ident in _scopes(principal)
            for period in BUDGET_PERIODS
        ]
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


def _message(scope: str, ident: str, nanos: int, max_usd: float, period: str, today: dt.date) -> str:
    who = "This API key" if scope == "key" else f"This key's team `{ident}`"
    end = period_end(period, today)
    when = f"It resets at {end.isoformat()}T00:00:00Z." if end else "It does not reset; ask an admin to raise it."
    label = "total" if period == "total" else period
    return f"{who} has used its {label} budget: ${nanos / NANO:.4f} spent of ${max_usd:.2f}. {when}"
