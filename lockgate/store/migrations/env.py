"""Alembic environment: runs on the connection the Store hands over (start-up, `lockgate db upgrade`).

Without one (the plain `alembic` command, e.g. for `alembic revision --autogenerate`),
it opens the database from LOCKGATE_DATABASE_URL or `sqlalchemy.url`.
"""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy import Connection

from lockgate.store.tables import metadata

config = context.config


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things: Alembic rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def _migrate(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()


async def _migrate_url(url: str) -> None:
    from lockgate.store.db import Store

    store = Store(url)
    try:
        async with store.engine.begin() as conn:
            await conn.run_sync(_migrate)
    finally:
        await store.aclose()


def _url() -> str:
    return os.environ.get("LOCKGATE_DATABASE_URL") or config.get_main_option("sqlalchemy.url") or "sqlite:///lockgate.db"


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
elif (shared := config.attributes.get("connection")) is not None:
    _migrate(shared)
else:
    asyncio.run(_migrate_url(_url()))
