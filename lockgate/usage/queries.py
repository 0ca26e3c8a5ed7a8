"""Usage reports, read from the daily roll-ups only (never the raw records): usage_rollup when it
answers the query (one dimension), usage_daily otherwise.

Days are UTC; a range is inclusive of both its start and end day.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import sqlalchemy as sa

from lockgate.usage.rows import percentile
from lockgate.usage.tables import usage_daily, usage_latency_daily, usage_rollup, usage_rollup_latency

GROUPS = {"key": "key_id", "model": "model", "team": "team", "day": "day"}
DEFAULT_DAYS = 30
_SINCE = re.compile(r"^(\d+)([dhw])$")


# The shapes the spec states: a date, or an RFC 3339 timestamp (its offset may be left off: UTC).
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_STAMP = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})?")


def parse_day(value: str) -> dt.date:
    """`2026-11-20` or an RFC 3339 timestamp (`2026-11-20T10:00:00Z`), as its UTC day; ValueError otherwise."""
    value = value.strip()
    if _DAY.fullmatch(value):
        return dt.date.fromisoformat(value)
    if not _STAMP.fullmatch(value):
        raise ValueError("not a date or an RFC 3339 timestamp")
    stamp = dt.datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    if stamp.tzinfo is not None:
        stamp = stamp.astimezone(dt.UTC)
    return stamp.date()


def since_days(value: str, today: dt.date) -> dt.date:
    """`7d`, `2w` or `24h` back from today (whole UTC days)."""
    match = _SINCE.match(value.strip())
    if not match:
        raise ValueError("use a number and d, w or h, e.g. 7d")
    n, unit = int(match.group(1)), match.group(2)
    days = {"d": n, "w": 7 * n, "h": -(-n // 24)}[unit]
    return today - dt.timedelta(days=max(days - 1, 0))


def _sources(
    group_by: str, start: dt.date, end: dt.date, key_id: str | None, team: str | None
) -> tuple[sa.ColumnElement[Any], list[Any], sa.Table, sa.ColumnElement[Any], list[Any], sa.Table]:
    """Where a report reads: the one-dimension roll-ups when they answer it, else usage_daily.

    Unfiltered reports and a by-day (or same-dimension) report of one key or one team read
    usage_rollup (a row per day and group); other filtered combinations need usage_daily's
    (day, key, team, model) rows. Both hold the same sums, so the answer is the same.
    """
    filters = {d: v for d, v in (("key", key_id), ("team", team)) if v is not None}
    dim = None
    if not filters:
        dim = "all" if group_by == "day" else group_by
    elif len(filters) == 1:
        (only,) = filters
        if group_by in ("day", only):
            dim = only
    if dim is not None:
        d, lat = usage_rollup.c, usage_rollup_latency.c
        where = [d.dim == dim, d.day >= start, d.day <= end]
        lwhere = [lat.dim == dim, lat.day >= start, lat.day <= end]
        if filters:
            where.append(d.value == next(iter(filters.values())))
            lwhere.append(lat.value == next(iter(filters.values())))
        col, lcol = (d.day, lat.day) if group_by == "day" else (d.value, lat.value)
        return col, where, usage_rollup, lcol, lwhere, usage_rollup_latency
    field = GROUPS[group_by]
    where = [usage_daily.c.day >= start, usage_daily.c.day <= end]
    lwhere = [usage_latency_daily.c.day >= start, usage_latency_daily.c.day <= end]
    if key_id is not None:
        where.append(usage_daily.c.key_id == key_id)
        lwhere.append(usage_latency_daily.c.key_id == key_id)
    if team is not None:
        where.append(usage_daily.c.team == team)
        lwhere.append(usage_latency_daily.c.team == team)
    return usage_daily.c[field], where, usage_daily, usage_latency_daily.c[field], lwhere, usage_latency_daily


async def report(
    engine: Any,
    group_by: str,
    start: dt.date,
    end: dt.date,
    *,
    key_id: str | None = None,
    team: str | None = None,
    after: Any = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """One row per group: requests, tokens, cost, errors and latency percentiles, in group order.

    `limit` groups after the group `after` (a key / team / model name, or a date): a page of a
    long report. The percentiles are then read for that page's groups only.
    """
    field = GROUPS[group_by]
    col, where, table, lcol, lwhere, ltable = _sources(group_by, start, end, key_id, team)
    if after is not None:
        where.append(col > after)
    t = table.c
    sums = (
        sa.select(
            col,
            sa.func.sum(t.requests),
            sa.func.sum(t.prompt_tokens),
            sa.func.sum(t.completion_tokens),
            sa.func.sum(t.cached_tokens),
            sa.func.sum(t.cost_usd),
            sa.func.sum(t.errors),
            sa.func.sum(t.cost_unknown),
        )
        .where(*where)
        .group_by(col)
        .order_by(col)
        .limit(limit)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(sums)).all()
        if limit is not None and rows:
            lwhere += [lcol >= rows[0][0], lcol <= rows[-1][0]]
        hist = sa.select(lcol, ltable.c.bucket, sa.func.sum(ltable.c["count"])).where(*lwhere).group_by(lcol, ltable.c.bucket)
        histograms: dict[Any, dict[int, int]] = {}
        for group, bucket, count in await conn.execute(hist) if rows else ():
            histograms.setdefault(group, {})[int(bucket)] = int(count)
    out = []
    for group, requests, prompt, completion, cached, cost, errors, unknown in rows:
        h = histograms.get(group, {})
        out.append(
            {
                field: _group_value(field, group),
                "requests": int(requests or 0),
                "prompt_tokens": int(prompt or 0),
                "completion_tokens": int(completion or 0),
                "cached_tokens": int(cached or 0),
                "cost_usd": round(float(cost or 0.0), 10),
                "cost_unknown_requests": int(unknown or 0),
                "errors": int(errors or 0),
                "latency_ms_p50": percentile(h, 0.50),
                "latency_ms_p95": percentile(h, 0.95),
            }
        )
    return out


def _group_value(field: str, value: Any) -> Any:
    if field == "day":
        return value.isoformat() if isinstance(value, dt.date) else str(value)
    return value or None  # '' in the roll-ups: no key / team / model
