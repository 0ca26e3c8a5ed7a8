"""Alembic migrations, run from the installed package (see lockgate.store.db.alembic_config)."""
