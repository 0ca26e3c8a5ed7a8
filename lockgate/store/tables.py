"""The schema as SQLAlchemy Core tables; migrations/ creates and evolves it.

Every table is declared on the one `metadata` so Alembic autogenerate sees them
all. Other modules (usage, budgets) add their tables here with a migration.
"""

from __future__ import annotations

import sqlalchemy as sa

# Stable constraint names, so migrations can refer to them on every back-end.
metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# Virtual API keys. The plaintext is never stored: only its SHA-256 and a short display prefix.
api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("key_prefix", sa.String(16), nullable=False),
    sa.Column("key_last4", sa.String(4), nullable=True),  # the key's last 4 characters, for display (0007)
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("user_id", sa.String(200), nullable=True, index=True),
    sa.Column("team_id", sa.String(200), nullable=True, index=True),
    sa.Column("models", sa.JSON, nullable=True),  # list of public model names; null/empty: all
    sa.Column("rpm", sa.Integer, nullable=True),
    sa.Column("tpm", sa.Integer, nullable=True),
    sa.Column("max_parallel_requests", sa.Integer, nullable=True),
    sa.Column("max_budget_usd", sa.Float, nullable=True),
    sa.Column("budget_period", sa.String(16), nullable=True),  # daily | weekly | monthly | total
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("metadata", sa.JSON, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
    sa.Index("ix_api_keys_created_id", "created_at", "id"),  # the console's keyset pages (0007)
    # The keys with a budget, for the console's "near budget" filter (0009). 0009 also adds indexes on
    # lower(name) and lower(key_prefix) for key search (dialect-specific expressions: not declared here).
    sa.Index(
        "ix_api_keys_budgeted",
        "created_at",
        "id",
        postgresql_where=sa.text("max_budget_usd IS NOT NULL"),
        sqlite_where=sa.text("max_budget_usd IS NOT NULL"),
    ),
    sa.Column("revoked", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
)

# Teams: the budget and limits every key of a team shares (auth/teams.py). `id` is the team name keys carry.
teams = sa.Table(
    "teams",
    metadata,
    sa.Column("id", sa.String(200), primary_key=True),
    sa.Column("max_budget_usd", sa.Float, nullable=True),
    sa.Column("budget_period", sa.String(16), nullable=True),  # daily | weekly | monthly | total
    sa.Column("rpm", sa.Integer, nullable=True),
    sa.Column("tpm", sa.Integer, nullable=True),
    sa.Column("max_parallel_requests", sa.Integer, nullable=True),
    sa.Column("metadata", sa.JSON, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
)

# Stored Responses (`store: true`): what a later turn (previous_response_id) and GET /v1/responses
# need, scoped to the key that created it. The user's data: never logged, never sent to analytics.
responses = sa.Table(
    "responses",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("owner", sa.String(200), nullable=False, index=True),  # the creating key's id
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("deployment", sa.String(200), nullable=True),
    sa.Column("previous_response_id", sa.String(64), nullable=True),
    sa.Column("response", sa.JSON, nullable=False),  # the Response object as returned
    sa.Column("input_items", sa.JSON, nullable=False),  # this turn's input items, with ids
    sa.Column("conversation", sa.JSON, nullable=False),  # every item up to and including the output
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
)
