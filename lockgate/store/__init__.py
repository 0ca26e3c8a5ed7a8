"""The SQL store: one async engine chosen by `database.url`, schema by Alembic migrations."""

from lockgate.store.db import Store, async_url

__all__ = ["Store", "async_url"]
