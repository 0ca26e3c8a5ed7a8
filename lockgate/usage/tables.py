"""Usage tables: raw records, and daily roll-ups the reports read (migration 0002_usage).

Declared on the store's one `metadata`, beside the keys tables. Roll-up key
columns are never NULL (primary keys cannot be): '' stands for "none" (an
unauthenticated request has no key, a key may have no team).
"""

from __future__ import annotations

import sqlalchemy as sa

from lockgate.store.tables import metadata

usage_records = sa.Table(
    "usage_records",
    metadata,
    sa.Column("request_id", sa.String(64), primary_key=True),
    sa.Column("parent_request_id", sa.String(64), nullable=True),
    sa.Column("attempt", sa.Integer, nullable=True),
    sa.Column("started_at", sa.DateTime, nullable=False),  # UTC
    sa.Column("endpoint", sa.String(16), nullable=False),
    sa.Column("model", sa.String(200), nullable=True),  # the public model name
    sa.Column("key_id", sa.String(64), nullable=True),
    sa.Column("user_id", sa.String(200), nullable=True),
    sa.Column("team", sa.String(200), nullable=True),
    sa.Column("provider", sa.String(32), nullable=True),
    sa.Column("deployment", sa.String(200), nullable=True),
    sa.Column("upstream_model", sa.String(200), nullable=True),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("error_type", sa.String(64), nullable=True),
    sa.Column("error_message", sa.Text, nullable=True),
    sa.Column("streamed", sa.Boolean, nullable=False),
    sa.Column("partial", sa.Boolean, nullable=False),
    sa.Column("usage_estimated", sa.Boolean, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("prompt_tokens", sa.Integer, nullable=False),
    sa.Column("completion_tokens", sa.Integer, nullable=False),
    sa.Column("cached_tokens", sa.Integer, nullable=False),
    sa.Column("cache_creation_tokens", sa.Integer, nullable=False),
    sa.Column("reasoning_tokens", sa.Integer, nullable=False),
    sa.Column("cost_usd", sa.Float, nullable=True),  # NULL: price unknown
    sa.Column("cost_unknown", sa.Boolean, nullable=False),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("ttft_ms", sa.Float, nullable=True),
    sa.Index("ix_usage_records_started_at", "started_at"),
    sa.Index("ix_usage_records_key_started", "key_id", "started_at"),
    sa.Index("ix_usage_records_team_started", "team", "started_at"),
    sa.Index("ix_usage_records_model_started", "model", "started_at"),
    sa.Index("ix_usage_records_parent", "parent_request_id"),
    sa.Index(  # a request's attempts, for the console's request page (0009)
        "ix_usage_records_attempts",
        "parent_request_id",
        "attempt",
        postgresql_where=sa.text("parent_request_id IS NOT NULL"),
        sqlite_where=sa.text("parent_request_id IS NOT NULL"),
    ),
)


def _group() -> list[sa.Column]:
    return [
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("key_id", sa.String(64), primary_key=True),
        sa.Column("team", sa.String(200), primary_key=True),
        sa.Column("model", sa.String(200), primary_key=True),
    ]


# One row per (day, key, team, model): what the reports and the budget rebuild read.
usage_daily = sa.Table(
    "usage_daily",
    metadata,
    *_group(),
    sa.Column("requests", sa.BigInteger, nullable=False),
    sa.Column("errors", sa.BigInteger, nullable=False),
    sa.Column("prompt_tokens", sa.BigInteger, nullable=False),
    sa.Column("completion_tokens", sa.BigInteger, nullable=False),
    sa.Column("cached_tokens", sa.BigInteger, nullable=False),
    sa.Column("cache_creation_tokens", sa.BigInteger, nullable=False),
    sa.Column("reasoning_tokens", sa.BigInteger, nullable=False),
    sa.Column("cost_usd", sa.Float, nullable=False),
    sa.Column("cost_unknown", sa.BigInteger, nullable=False),  # requests whose price is unknown
)

# A latency histogram per (day, key, team, model): log buckets, so percentiles come from roll-ups.
usage_latency_daily = sa.Table(
    "usage_latency_daily",
    metadata,
    *_group(),
    sa.Column("bucket", sa.Integer, primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False),
)

ROLLUP_SUMS = (
    "requests",
    "errors",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cache_creation_tokens",
    "reasoning_tokens",
    "cost_usd",
    "cost_unknown",
)

# The same sums rolled up along one dimension at a time (migration 0009_usage_rollups): per day
# overall (`dim` "all", value ''), and per day and key, team or model (value '' for none). The
# overview and the unfiltered reports read these: 30 rows for a month's totals, one per key a day
# for a report by key, instead of every (key, team, model) combination. Written in the same
# transaction as the records (usage/store.py), so they never drift from usage_daily.
ROLLUP_DIMS = ("all", "key", "team", "model")
DIM_COLUMN = {"key": "key_id", "team": "team", "model": "model"}

usage_rollup = sa.Table(
    "usage_rollup",
    metadata,
    sa.Column("dim", sa.String(8), primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("value", sa.String(200), primary_key=True),
    *(sa.Column(c, sa.Float if c == "cost_usd" else sa.BigInteger, nullable=False) for c in ROLLUP_SUMS),
    sa.Index("ix_usage_rollup_dim_value_day", "dim", "value", "day"),  # one key's or team's days
)

usage_rollup_latency = sa.Table(
    "usage_rollup_latency",
    metadata,
    sa.Column("dim", sa.String(8), primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("value", sa.String(200), primary_key=True),
    sa.Column("bucket", sa.Integer, primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False),
    sa.Index("ix_usage_rollup_latency_dim_value_day", "dim", "value", "day", "bucket", "count"),
)
