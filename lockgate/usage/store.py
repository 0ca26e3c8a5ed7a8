"""Writes batches of usage rows: raw records and roll-ups in one transaction, idempotent by request id.

The roll-ups are usage_daily / usage_latency_daily (per day, key, team and model) and
usage_rollup / usage_rollup_latency (per day along one dimension: overall, key, team, model).

``INSERT … ON CONFLICT (request_id) DO NOTHING RETURNING request_id`` tells which
rows are new; only those are added to the roll-ups, in the same transaction, so
a batch written twice (a spool replay after a timeout that did commit) changes
nothing the second time. Same SQL on SQLite and PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from lockgate.usage.rows import Row, by_dimension, for_insert, rollups
from lockgate.usage.tables import (
    ROLLUP_SUMS,
    usage_daily,
    usage_latency_daily,
    usage_records,
    usage_rollup,
    usage_rollup_latency,
)


def _insert(dialect: str, table: sa.Table) -> Any:
    # The dialect's own INSERT (for ON CONFLICT), imported for the one in use: PostgreSQL's costs ~3 MB.
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)
    from sqlalchemy.dialects import sqlite

    return sqlite.insert(table)


class UsageStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        ins = _insert(self.dialect, usage_records)
        self._records = ins.on_conflict_do_nothing(index_elements=["request_id"]).returning(usage_records.c.request_id)
        daily = _insert(self.dialect, usage_daily)
        self._daily = daily.on_conflict_do_update(
            index_elements=["day", "key_id", "team", "model"],
            set_={c: usage_daily.c[c] + daily.excluded[c] for c in ROLLUP_SUMS},
        )
        hist = _insert(self.dialect, usage_latency_daily)
        self._hist = hist.on_conflict_do_update(
            index_elements=["day", "key_id", "team", "model", "bucket"],
            set_={"count": usage_latency_daily.c["count"] + hist.excluded["count"]},
        )
        dim = _insert(self.dialect, usage_rollup)
        self._dim = dim.on_conflict_do_update(
            index_elements=["dim", "day", "value"],
            set_={c: usage_rollup.c[c] + dim.excluded[c] for c in ROLLUP_SUMS},
        )
        dim_hist = _insert(self.dialect, usage_rollup_latency)
        self._dim_hist = dim_hist.on_conflict_do_update(
            index_elements=["dim", "day", "value", "bucket"],
            set_={"count": usage_rollup_latency.c["count"] + dim_hist.excluded["count"]},
        )

    async def write(self, rows: list[Row]) -> int:
        """Store a batch; returns how many records were new."""
        if not rows:
            return 0
        rows = list({r["request_id"]: r for r in reversed(rows)}.values())[::-1]  # first of each id
        async with self.engine.begin() as conn:
            result = await conn.execute(self._records, [for_insert(r) for r in rows])
            new = {r[0] for r in result}
            if not new:
                return 0
            daily, hist = rollups([r for r in rows if r["request_id"] in new])
            if daily:
                await conn.execute(self._daily, daily)
            if hist:
                await conn.execute(self._hist, hist)
            # The one-dimension roll-ups, in this same transaction: they commit with the records or not at all.
            dim_sums, dim_counts = by_dimension(daily, hist)
            if dim_sums:
                await conn.execute(self._dim, dim_sums)
            if dim_counts:
                await conn.execute(self._dim_hist, dim_counts)
        return len(new)
