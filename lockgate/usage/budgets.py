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

import datetime as dt
from collections.abc import Iterable
from typing import Any, NamedTuple, Protocol

import sqlalchemy as sa
import structlog

from lockgate.auth.keys import BUDGET_PERIODS
from lockgate.errors import BudgetExceeded, BudgetUnavailable
from lockgate.ratelimit.admission import estimate_parts
from lockgate.usage.tables import usage_daily

log = structlog.get_logger("lockgate.usage.budgets")

NANO = 1_000_000_000


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
