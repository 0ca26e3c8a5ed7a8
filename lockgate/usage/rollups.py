"""Rebuild the one-dimension roll-ups (usage_rollup*) from usage_daily / usage_latency_daily.

The usage writer keeps them in the records' transaction, so they never drift, except for one case:
during a rolling upgrade to migration 0009, a replica still running older code writes usage_daily but
not these. `lockgate db rebuild-rollups` (run once every replica runs the new code) makes them equal
again. One transaction: a writer that commits meanwhile either is in the rebuild's snapshot or adds its
increment after it (its upsert waits on the rebuilt rows), so nothing is counted twice or lost.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from lockgate.usage.tables import (
    DIM_COLUMN,
    ROLLUP_DIMS,
    ROLLUP_SUMS,
    usage_daily,
    usage_latency_daily,
    usage_rollup,
    usage_rollup_latency,
)


def _value(table: sa.Table, dim: str) -> Any:
    return sa.literal("") if dim == "all" else table.c[DIM_COLUMN[dim]]


async def rebuild_rollups(engine: AsyncEngine, since: dt.date | None = None) -> int:
    """Replace the roll-ups of every day from ``since`` (all days when None); returns the rows written."""
    written = 0
    async with engine.begin() as conn:
        for table in (usage_rollup, usage_rollup_latency):
            delete = table.delete()
            await conn.execute(delete if since is None else delete.where(table.c.day >= since))
        for dim in ROLLUP_DIMS:
            sums = sa.select(
                sa.literal(dim),
                usage_daily.c.day,
                _value(usage_daily, dim),
                *(sa.func.sum(usage_daily.c[c]) for c in ROLLUP_SUMS),
            ).group_by(usage_daily.c.day, *(() if dim == "all" else (usage_daily.c[DIM_COLUMN[dim]],)))
            hist = sa.select(
                sa.literal(dim),
                usage_latency_daily.c.day,
                _value(usage_latency_daily, dim),
                usage_latency_daily.c.bucket,
                sa.func.sum(usage_latency_daily.c["count"]),
            ).group_by(
                usage_latency_daily.c.day,
                *(() if dim == "all" else (usage_latency_daily.c[DIM_COLUMN[dim]],)),
                usage_latency_daily.c.bucket,
            )
            if since is not None:
                sums = sums.where(usage_daily.c.day >= since)
                hist = hist.where(usage_latency_daily.c.day >= since)
            key = ["dim", "day", "value"]
            done = await conn.execute(usage_rollup.insert().from_select([*key, *ROLLUP_SUMS], sums))
            written += done.rowcount or 0
            done = await conn.execute(usage_rollup_latency.insert().from_select([*key, "bucket", "count"], hist))
            written += done.rowcount or 0
    return written
