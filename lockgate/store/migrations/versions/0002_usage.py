"""Usage records and their daily roll-ups (lockgate/usage/tables.py).

Revision ID: 0002_usage
Revises: 0001_keys
Create Date: 2026-01-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_usage"
down_revision = "0001_keys"
branch_labels = None
depends_on = None


def _group() -> list[sa.Column]:
    return [
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("team", sa.String(200), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "usage_records",
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("parent_request_id", sa.String(64), nullable=True),
        sa.Column("attempt", sa.Integer, nullable=True),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("endpoint", sa.String(16), nullable=False),
        sa.Column("model", sa.String(200), nullable=True),
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
        sa.Column("cost_usd", sa.Float, nullable=True),
        sa.Column("cost_unknown", sa.Boolean, nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("ttft_ms", sa.Float, nullable=True),
        sa.PrimaryKeyConstraint("request_id", name="pk_usage_records"),
    )
    op.create_index("ix_usage_records_started_at", "usage_records", ["started_at"])
    op.create_index("ix_usage_records_key_started", "usage_records", ["key_id", "started_at"])
    op.create_index("ix_usage_records_team_started", "usage_records", ["team", "started_at"])
    op.create_index("ix_usage_records_model_started", "usage_records", ["model", "started_at"])
    op.create_index("ix_usage_records_parent", "usage_records", ["parent_request_id"])

    op.create_table(
        "usage_daily",
        *_group(),
        sa.Column("requests", sa.BigInteger, nullable=False),
        sa.Column("errors", sa.BigInteger, nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger, nullable=False),
        sa.Column("completion_tokens", sa.BigInteger, nullable=False),
        sa.Column("cached_tokens", sa.BigInteger, nullable=False),
        sa.Column("cache_creation_tokens", sa.BigInteger, nullable=False),
        sa.Column("reasoning_tokens", sa.BigInteger, nullable=False),
        sa.Column("cost_usd", sa.Float, nullable=False),
        sa.Column("cost_unknown", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("day", "key_id", "team", "model", name="pk_usage_daily"),
    )
    op.create_table(
        "usage_latency_daily",
        *_group(),
        sa.Column("bucket", sa.Integer, nullable=False),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("day", "key_id", "team", "model", "bucket", name="pk_usage_latency_daily"),
    )


def downgrade() -> None:
    op.drop_table("usage_latency_daily")
    op.drop_table("usage_daily")
    for name in ("parent", "model_started", "team_started", "key_started", "started_at"):
        op.drop_index(f"ix_usage_records_{name}", table_name="usage_records")
    op.drop_table("usage_records")
