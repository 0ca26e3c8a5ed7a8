"""Usage roll-ups along one dimension at a time (per day overall, per day and key / team / model), and
prefix-search indexes on key names and prefixes: what the console's overview, usage and key search read.

The new roll-ups are backfilled from usage_daily / usage_latency_daily in this migration (an
existing database gets its history), then kept by the usage writer in the transaction that
inserts the records (usage/store.py).

Revision ID: 0009_usage_rollups
Revises: 0008_max_parallel
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_usage_rollups"
down_revision = "0008_max_parallel"
branch_labels = None
depends_on = None

# A frozen copy of usage/tables.py's ROLLUP_SUMS: a migration must not change when the code does.
SUMS = (
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
# dim -> the usage_daily column it rolls up by ('' for the overall row)
DIMS = {"all": "''", "key": "key_id", "team": "team", "model": "model"}


def _key_columns() -> list[sa.Column]:
    return [
        sa.Column("dim", sa.String(8), nullable=False),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("value", sa.String(200), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "usage_rollup",
        *_key_columns(),
        *(sa.Column(c, sa.Float if c == "cost_usd" else sa.BigInteger, nullable=False) for c in SUMS),
        sa.PrimaryKeyConstraint("dim", "day", "value", name="pk_usage_rollup"),
    )
    op.create_index("ix_usage_rollup_dim_value_day", "usage_rollup", ["dim", "value", "day"])
    op.create_table(
        "usage_rollup_latency",
        *_key_columns(),
        sa.Column("bucket", sa.Integer, nullable=False),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("dim", "day", "value", "bucket", name="pk_usage_rollup_latency"),
    )
    # With bucket and count: a page of groups' percentiles is read from the index alone.
    op.create_index("ix_usage_rollup_latency_dim_value_day", "usage_rollup_latency", ["dim", "value", "day", "bucket", "count"])

    # Backfill: the same sums, grouped one dimension at a time (plain SQL, the same on both back-ends).
    sums = ", ".join(SUMS)
    for dim, col in DIMS.items():
        group = "day" if dim == "all" else f"day, {col}"
        op.execute(
            f"INSERT INTO usage_rollup (dim, day, value, {sums}) "
            f"SELECT '{dim}', day, {col}, {', '.join(f'SUM({c})' for c in SUMS)} FROM usage_daily GROUP BY {group}"
        )
        op.execute(
            "INSERT INTO usage_rollup_latency (dim, day, value, bucket, count) "
            f"SELECT '{dim}', day, {col}, bucket, SUM(count) FROM usage_latency_daily GROUP BY {group}, bucket"
        )

    # Key search by name or key prefix, case-insensitive, as a range on an index (see console/queries.py).
    if op.get_bind().dialect.name == "postgresql":
        # "C" collation: byte order, so every name with a prefix sits in one range of the index.
        op.execute('CREATE INDEX ix_api_keys_name_lower ON api_keys ((lower(name) COLLATE "C"), created_at, id)')
        op.execute('CREATE INDEX ix_api_keys_prefix_lower ON api_keys ((lower(key_prefix) COLLATE "C"))')
    else:
        op.execute("CREATE INDEX ix_api_keys_name_lower ON api_keys (lower(name), created_at, id)")
        op.execute("CREATE INDEX ix_api_keys_prefix_lower ON api_keys (lower(key_prefix))")
    # A request's attempts: only retried requests have them, so an index of the non-null parents stays small,
    # and SQLite uses it even when its statistics say that ix_usage_records_parent is almost all NULLs.
    op.create_index(
        "ix_usage_records_attempts",
        "usage_records",
        ["parent_request_id", "attempt"],
        postgresql_where=sa.text("parent_request_id IS NOT NULL"),
        sqlite_where=sa.text("parent_request_id IS NOT NULL"),
    )
    # The keys with a budget, newest first: the "near budget" filter looks at these only.
    op.create_index(
        "ix_api_keys_budgeted",
        "api_keys",
        ["created_at", "id"],
        postgresql_where=sa.text("max_budget_usd IS NOT NULL"),
        sqlite_where=sa.text("max_budget_usd IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_api_keys_budgeted", table_name="api_keys")
    op.drop_index("ix_usage_records_attempts", table_name="usage_records")
    op.drop_index("ix_api_keys_prefix_lower", table_name="api_keys")
    op.drop_index("ix_api_keys_name_lower", table_name="api_keys")
    op.drop_index("ix_usage_rollup_latency_dim_value_day", table_name="usage_rollup_latency")
    op.drop_table("usage_rollup_latency")
    op.drop_index("ix_usage_rollup_dim_value_day", table_name="usage_rollup")
    op.drop_table("usage_rollup")
