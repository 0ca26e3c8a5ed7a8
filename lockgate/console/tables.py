"""The console's tables (migration 0007_console): admin users, sessions, and the audit log.

Declared on the store's one `metadata`. A session row is keyed by the SHA-256 of its id: the id
itself exists only in the browser's cookie. The audit log is append-only: the code inserts and
reads, never updates or deletes.
"""

from __future__ import annotations

import sqlalchemy as sa

from lockgate.store.tables import metadata

console_users = sa.Table(
    "console_users",
    metadata,
    sa.Column("username", sa.String(100), primary_key=True),
    sa.Column("password_hash", sa.String(200), nullable=False),  # argon2id, encoded with its parameters
    sa.Column("role", sa.String(16), nullable=False),  # admin | viewer
    sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
)

console_sessions = sa.Table(
    "console_sessions",
    metadata,
    sa.Column("id_hash", sa.String(64), primary_key=True),
    sa.Column("subject", sa.String(100), nullable=False, index=True),  # a user name, or "master"
    sa.Column("role", sa.String(16), nullable=False),
    # Ties a master-key session to the master key it was opened with: another key ends it.
    sa.Column("credential_tag", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),  # the absolute cap
    sa.Column("address", sa.String(64), nullable=True),
    sa.Column("user_agent", sa.String(200), nullable=True),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("actor", sa.String(200), nullable=False),  # a console user, "master", a JWT subject, "cli"
    sa.Column("via", sa.String(16), nullable=False),  # console | api | cli
    sa.Column("address", sa.String(64), nullable=True),
    sa.Column("action", sa.String(64), nullable=False, index=True),
    sa.Column("target_type", sa.String(32), nullable=True),
    sa.Column("target_id", sa.String(200), nullable=True),
    sa.Column("outcome", sa.String(16), nullable=False),  # ok | refused
    sa.Column("before", sa.JSON, nullable=True),  # redacted: never a key, hash or password
    sa.Column("after", sa.JSON, nullable=True),
)
