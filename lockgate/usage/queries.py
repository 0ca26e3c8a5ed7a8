"""Usage reports, read from the daily roll-ups only (never the raw records).

Days are UTC; a range is inclusive of both its start and end day.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import sqlalchemy as sa

from lockgate.usage.rows import percentile
from lockgate.usage.tables import usage_daily, usage_latency_daily

GROUPS = {"key": "key_id", "model": "model", "team": "team", "day": "day"}
DEFAULT_DAYS = 30
_SINCE = re.compile(r"^(\d+)([dhw])$")


def parse_day(value: str) -> dt.date:
    """`2026-11-20` or an ISO timestamp (`2026-11-20T10:00:00Z`), as its UTC day."""
    value = value.strip()
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        stamp = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
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


async def report(
    engine: Any,
    group_by: str,
    start: dt.date,
    end: dt.date,
    *,
    key_id: str | None = None,
    team: str | None = None,
) -> list[dict[str, Any]]:
    """One row per group: requests, tokens, cost, errors and latency percentiles."""
    field = GROUPS[group_by]
    col = usage_daily.c[field]
    where = [usage_daily.c.day >= start, usage_daily.c.day <= end]
    if key_id is not None:
        where.append(usage_daily.c.key_id == key_id)
    if team is not None:
        where.append(usage_daily.c.team == team)
    sums = (
        sa.select(
            col,
            sa.func.sum(usage_daily.c.requests),
            sa.func.sum(usage_daily.c.prompt_tokens),
            sa.func.sum(usage_daily.c.completion_tokens),
            sa.func.sum(usage_daily.c.cached_tokens),
            sa.func.sum(usage_daily.c.cost_usd),
            sa.func.sum(usage_daily.c.errors),
            sa.func.sum(usage_daily.c.cost_unknown),
        )
        .where(*where)
        .group_by(col)
        .order_by(col)
    )
    lcol = usage_latency_daily.c[field]
    lwhere = [usage_latency_daily.c.day >= start, usage_latency_daily.c.day <= end]
    if key_id is not None:
        lwhere.append(usage_latency_daily.c.key_id == key_id)
    if team is not None:
        lwhere.append(usage_latency_daily.c.team == team)
    hist = (
        sa.select(lcol, usage_latency_daily.c.bucket, sa.func.sum(usage_latency_daily.c["count"]))
        .where(*lwhere)
        .group_by(lcol, usage_latency_daily.c.bucket)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(sums)).all()
        histograms: dict[Any, dict[int, int]] = {}
        for group, bucket, count in await conn.execute(hist):
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
