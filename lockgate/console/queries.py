"""The console's list queries: one SQL query per page, keyset-paginated (never OFFSET, never "load all").

A cursor is the sort key of the last row shown (`<timestamp>~<id>`), so page N costs the same as
page 1 on an index. Filters are exact matches on indexed columns where there is one.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from lockgate.auth.keys import KeyRow
from lockgate.console.forms import FormError
from lockgate.store.db import utcnow
from lockgate.store.tables import api_keys
from lockgate.usage.tables import usage_records

PAGE = 50
KEY_STATUSES = ("active", "revoked", "expired", "expiring", "near_budget")
NEAR_BUDGET = 0.8  # "near_budget": spend in the current budget period at 80 % of the budget or more
EXPIRING_WITHIN = dt.timedelta(days=7)


def parse_cursor(value: str | None) -> tuple[dt.datetime, str] | None:
    if not value:
        return None
    stamp, sep, row_id = value.partition("~")
    try:
        when = dt.datetime.fromisoformat(stamp)
    except ValueError:
        raise FormError("after", "not a page cursor from this console") from None
    if not sep or not row_id or len(row_id) > 200:
        raise FormError("after", "not a page cursor from this console")
    return when, row_id


def cursor(when: dt.datetime | None, row_id: str) -> str:
    stamp = when.replace(tzinfo=None).isoformat() if when else "1970-01-01T00:00:00"
    return f"{stamp}~{row_id}"


def _older(stamp_col: Any, id_col: Any, after: tuple[dt.datetime, str]) -> Any:
    when, row_id = after
    when = when.replace(tzinfo=None) if stamp_col.type.timezone is False else when
    return sa.or_(stamp_col < when, sa.and_(stamp_col == when, id_col < row_id))


@dataclass
class Page:
    rows: list[Any]
    next: str | None  # the cursor of the next page, if there is one


async def key_page(
    engine: Any, *, q: str | None = None, status: str | None = None, team: str | None = None, after: str | None = None
) -> Page:
    """Newest keys first, PAGE at a time: search by name or key prefix (starts with, any case), user, team or id."""
    c = api_keys.c
    query = sa.select(api_keys).order_by(c.created_at.desc(), c.id.desc()).limit(PAGE + 1)
    if q:
        # A union of one indexed lookup per way of matching: SQLite would not use the indexes under
        # one OR of ranges (it scanned every key); PostgreSQL plans both forms alike.
        dialect = engine.dialect.name
        matches = (
            starts_with(c.name, q, dialect),
            starts_with(c.key_prefix, q, dialect),
            c.user_id == q,
            c.team_id == q,
            c.id == q,
        )
        query = query.where(c.id.in_(sa.union(*(sa.select(c.id).where(m) for m in matches))))
    if team:
        query = query.where(c.team_id == team)
    now = utcnow()
    not_expired = sa.or_(c.expires_at.is_(None), c.expires_at > now)
    if status == "active":
        query = query.where(c.revoked == sa.false(), not_expired)
    elif status == "revoked":
        query = query.where(c.revoked == sa.true())
    elif status == "expired":
        query = query.where(c.revoked == sa.false(), c.expires_at <= now)
    elif status == "expiring":
        query = query.where(c.revoked == sa.false(), c.expires_at > now, c.expires_at <= now + EXPIRING_WITHIN)
    elif status == "near_budget":
        query = query.where(
            c.revoked == sa.false(), c.max_budget_usd.is_not(None), period_spend() >= NEAR_BUDGET * c.max_budget_usd
        )
    start = parse_cursor(after)
    if start is not None:
        query = query.where(_older(c.created_at, c.id, (start[0].replace(tzinfo=dt.UTC), start[1])))
    async with engine.connect() as conn:
        if status == "near_budget" and engine.dialect.name == "postgresql":
            # The correlated subquery's estimate (once per key) crosses jit_above_cost; compiling it
            # took ~1 s for a query that runs in milliseconds (EXPLAIN ANALYZE, bench/console_scale.py).
            await conn.execute(sa.text("SET LOCAL jit = off"))
        rows = [KeyRow.from_db(r) for r in (await conn.execute(query)).all()]
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    return Page(rows, cursor(rows[-1].created_at, rows[-1].id) if more else None)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def starts_with(col: Any, text: str, dialect: str) -> Any:
    """`lower(col)` starts with `text`, as a range on the index of lower(col) (migration 0009).

    A range, not LIKE: no wildcard in the text can widen it, and it uses the index on both
    back-ends with bound parameters. PostgreSQL compares in the "C" collation (byte order), which
    the index is built in, so the names with one prefix are one contiguous range.
    """
    expr: Any = sa.func.lower(col)
    if dialect == "postgresql":
        low = text.lower()
        expr = expr.collate("C")
    else:
        low = text.translate(_ASCII_LOWER)  # SQLite's lower() folds ASCII letters only

    return sa.and_(expr >= low, expr < low + "\U0010ffff")


def period_spend() -> Any:
    """A key's spend in its current budget period, from its per-day roll-up (a correlated subquery on an index)."""
    from lockgate.usage.budgets import period_start
    from lockgate.usage.tables import usage_rollup

    today = utcnow().date()
    start = sa.case(
        *((api_keys.c.budget_period == p, period_start(p, today)) for p in ("daily", "weekly", "monthly")),
        else_=dt.date(1970, 1, 1),
    )
    return (
        sa.select(sa.func.coalesce(sa.func.sum(usage_rollup.c.cost_usd), 0.0))
        .where(usage_rollup.c.dim == "key", usage_rollup.c.value == api_keys.c.id, usage_rollup.c.day >= start)
        .scalar_subquery()
    )


LOG_FILTERS = ("key", "team", "user", "model", "deployment", "status", "error_type", "streamed", "request_id")


@dataclass
class LogFilter:
    key: str | None = None
    team: str | None = None
    user: str | None = None
    model: str | None = None
    deployment: str | None = None
    status: str | None = None  # ok | error | a status code
    error_type: str | None = None
    streamed: bool | None = None
    min_latency_ms: float | None = None
    min_cost_usd: float | None = None
    request_id: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None

    @classmethod
    def from_query(cls, params: Any) -> "LogFilter":
        def text(name: str) -> str | None:
            value = (params.get(name) or "").strip()
            if len(value) > 200:
                raise FormError(name, "at most 200 characters")
            return value or None

        def number(name: str) -> float | None:
            value = text(name)
            if value is None:
                return None
            try:
                return float(value)
            except ValueError:
                raise FormError(name, "must be a number") from None

        def stamp(name: str) -> dt.datetime | None:
            value = text(name)
            if value is None:
                return None
            try:
                when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                raise FormError(name, "must be a date and time like 2026-12-01T10:00") from None
            return when.astimezone(dt.UTC).replace(tzinfo=None) if when.tzinfo else when

        status = text("status")
        if status is not None and status not in ("ok", "error") and not (status.isdigit() and len(status) == 3):
            raise FormError("status", "ok, error, or a status code like 429")
        streamed = text("streamed")
        if streamed not in (None, "yes", "no"):
            raise FormError("streamed", "yes or no")
        return cls(
            key=text("key"),
            team=text("team"),
            user=text("user"),
            model=text("model"),
            deployment=text("deployment"),
            status=status,
            error_type=text("error_type"),
            streamed=None if streamed is None else streamed == "yes",
            min_latency_ms=number("min_latency_ms"),
            min_cost_usd=number("min_cost_usd"),
            request_id=text("request_id"),
            since=stamp("since"),
            until=stamp("until"),
        )

    def where(self) -> list[Any]:
        c = usage_records.c
        out: list[Any] = [c.parent_request_id.is_(None)]  # requests; their attempts show in the detail view
        for name, col in (
            ("key", c.key_id),
            ("team", c.team),
            ("user", c.user_id),
            ("model", c.model),
            ("deployment", c.deployment),
            ("error_type", c.error_type),
            ("request_id", c.request_id),
        ):
            value = getattr(self, name)
            if value is not None:
                out.append(col == value)
        if self.status == "ok":
            out.append(c.status < 400)
        elif self.status == "error":
            out.append(c.status >= 400)
        elif self.status is not None:
            out.append(c.status == int(self.status))
        if self.streamed is not None:
            out.append(c.streamed == self.streamed)
        if self.min_latency_ms is not None:
            out.append(c.latency_ms >= self.min_latency_ms)
        if self.min_cost_usd is not None:
            out.append(c.cost_usd >= self.min_cost_usd)
        if self.since is not None:
            out.append(c.started_at >= self.since)
        if self.until is not None:
            out.append(c.started_at < self.until)
        return out


async def log_page(engine: Any, filters: LogFilter, after: str | None = None) -> Page:
    """Newest requests first, PAGE at a time, in one query."""
    c = usage_records.c
    query = (
        sa.select(
            c.request_id,
            c.started_at,
            c.endpoint,
            c.model,
            c.key_id,
            c.team,
            c.user_id,
            c.deployment,
            c.status,
            c.error_type,
            c.streamed,
            c.attempts,
            c.prompt_tokens,
            c.completion_tokens,
            c.cost_usd,
            c.latency_ms,
        )
        .where(*filters.where())
        .order_by(c.started_at.desc(), c.request_id.desc())
        .limit(PAGE + 1)
    )
    start = parse_cursor(after)
    if start is not None:
        query = query.where(_older(c.started_at, c.request_id, start))
    async with engine.connect() as conn:
        rows = [dict(r._mapping) for r in (await conn.execute(query)).all()]
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    return Page(rows, cursor(rows[-1]["started_at"], rows[-1]["request_id"]) if more else None)


async def log_detail(engine: Any, request_id: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """One request's record and its attempts (two indexed lookups)."""
    c = usage_records.c
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(usage_records).where(c.request_id == request_id))).first()
        attempts = (
            await conn.execute(sa.select(usage_records).where(c.parent_request_id == request_id).order_by(c.attempt).limit(100))
        ).all()
    return (dict(row._mapping) if row else None), [dict(a._mapping) for a in attempts]


async def recent_failures(engine: Any, hours: int = 24, limit: int = 500) -> list[dict[str, Any]]:
    """The newest failed attempts and requests (by the started_at index), for the deployments page."""
    c = usage_records.c
    since = (utcnow() - dt.timedelta(hours=hours)).replace(tzinfo=None)
    query = (
        sa.select(c.started_at, c.model, c.deployment, c.status, c.error_type, c.error_message)
        .where(c.started_at >= since, c.status >= 400, c.deployment.is_not(None))
        .order_by(c.started_at.desc())
        .limit(limit)
    )
    async with engine.connect() as conn:
        return [dict(r._mapping) for r in (await conn.execute(query)).all()]


async def team_page(engine: Any, after: str | None = None) -> Page:
    """Teams by name, PAGE at a time (keyset on the name)."""
    from lockgate.auth.teams import TeamRow
    from lockgate.store.tables import teams

    query = sa.select(teams).order_by(teams.c.id).limit(PAGE + 1)
    if after:
        query = query.where(teams.c.id > after[:200])
    async with engine.connect() as conn:
        rows = [TeamRow.from_db(r) for r in (await conn.execute(query)).all()]
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    return Page(rows, rows[-1].id if more else None)


async def daily_totals(engine: Any, start: dt.date, end: dt.date) -> list[dict[str, Any]]:
    """Requests, errors and spend per day from the overall roll-up (one row a day; no latency: the cards need none)."""
    from lockgate.usage.tables import usage_rollup

    d = usage_rollup.c
    query = sa.select(d.day, d.requests, d.errors, d.cost_usd).where(d.dim == "all", d.day >= start, d.day <= end)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [
        {
            "day": day.isoformat() if hasattr(day, "isoformat") else str(day),
            "requests": int(r or 0),
            "errors": int(e or 0),
            "cost_usd": float(c or 0),
        }
        for day, r, e, c in rows
    ]


async def top_spend(engine: Any, field: str, start: dt.date, end: dt.date, limit: int = 10) -> list[dict[str, Any]]:
    """The `limit` keys, teams or models with the most spend over the range (one-dimension roll-up, one query)."""
    from lockgate.usage.tables import usage_rollup

    d = usage_rollup.c
    dim = {"key_id": "key", "team": "team", "model": "model"}[field]
    cost = sa.func.sum(d.cost_usd)
    query = (
        sa.select(d.value, cost, sa.func.sum(d.requests))
        .where(d.dim == dim, d.day >= start, d.day <= end, d.value != "")
        .group_by(d.value)
        .order_by(cost.desc(), d.value)
        .limit(limit)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [{field: name, "cost_usd": float(c or 0), "requests": int(r or 0)} for name, c, r in rows]
