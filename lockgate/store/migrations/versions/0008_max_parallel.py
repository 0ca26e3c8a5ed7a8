"""max_parallel_requests on keys and teams: requests in flight at once (lockgate/ratelimit/).

Revision ID: 0008_max_parallel
Revises: 0007_console
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_max_parallel"
# After 0007_console (merged first); 0005 is another branch's in flight: whoever merges it chains it on.
down_revision = "0007_console"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("api_keys", "teams"):
        op.add_column(table, sa.Column("max_parallel_requests", sa.Integer, nullable=True))


def downgrade() -> None:
    for table in ("api_keys", "teams"):
        with op.batch_alter_table(table) as batch:  # SQLite drops a column by copying the table
            batch.drop_column("max_parallel_requests")
