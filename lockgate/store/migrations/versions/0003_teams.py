"""Teams: a shared budget and rate limits for every key of a team (lockgate/auth/teams.py).

Revision ID: 0003_teams
Revises: 0002_usage
Create Date: 2026-01-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_teams"
down_revision = "0002_usage"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "teams",
        sa.Column("id", sa.String(200), nullable=False),
        sa.Column("max_budget_usd", sa.Float, nullable=True),
        sa.Column("budget_period", sa.String(16), nullable=True),
        sa.Column("rpm", sa.Integer, nullable=True),
        sa.Column("tpm", sa.Integer, nullable=True),
        sa.Column("metadata", sa.JSON, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_teams"),
    )


def downgrade() -> None:
    op.drop_table("teams")
