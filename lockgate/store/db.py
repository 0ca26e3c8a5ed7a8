"""The async engine for `database.url`, and Alembic migrations run from the installed package.

`sqlite:///path` and `postgresql://…` are mapped to their async drivers
(aiosqlite, asyncpg); a URL that already names a driver is used as written.
Migrations run at start-up (every worker may try: a lock makes them take turns)
and with `lockgate migrate` / `lockgate db upgrade`. With LOCKGATE_MIGRATE_ON_START=false a
replica only checks the schema: readiness stays 503 until a migrate step brings it to head,
and a database newer than this code refuses the start.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import fcntl
import functools
import os
import re
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

log = structlog.get_logger("lockgate.store")

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Any constant: PostgreSQL advisory lock id that serialises migrations across workers and replicas.
_PG_MIGRATION_LOCK = 0x4C4B4754  # "LKGT"


class SchemaAhead(RuntimeError):
    """The database was migrated by a newer Lockgate: this code must not write to it."""


def _migrate_on_start() -> bool:
    return os.environ.get("LOCKGATE_MIGRATE_ON_START", "true").strip().lower() not in ("0", "false", "no", "off")


_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
}


def async_url(url: str) -> sa.URL:
    """`database.url` with its async driver: sqlite:/// → aiosqlite, postgresql:// → asyncpg."""
    parsed = make_url(url)
    driver = _ASYNC_DRIVERS.get(parsed.drivername)
    return parsed.set(drivername=driver) if driver else parsed


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def aware(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands timestamps back without a zone; they were written in UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


# WAL lets readers run beside the writer; busy_timeout makes workers wait for the lock, not fail.
# Every SQLite connection gets these: the engine's, and the Responses writer's own (sqlite_writer.py).
SQLITE_PRAGMAS = ("journal_mode=WAL", "busy_timeout=5000", "foreign_keys=ON")


def sqlite_setup(dbapi_conn: Any) -> None:
    cur = dbapi_conn.cursor()
    for pragma in SQLITE_PRAGMAS:
        cur.execute(f"PRAGMA {pragma}")
    cur.close()


def _on_sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    sqlite_setup(dbapi_conn)


class Store:
    """One engine per process; `engine` is shared by every module that writes SQL (keys, usage…)."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = async_url(url)
        self.dialect = self.url.get_backend_name()
        # Batched inserts of N rows are N-row statements: pages of at most 50 rows keep the
        # number of distinct statements (and of prepared ones the drivers cache) bounded.
        kwargs: dict[str, Any] = {"echo": echo, "insertmanyvalues_page_size": 50}
        if self.dialect == "sqlite":
            if self.url.database in (None, "", ":memory:"):
                # One shared connection, or every pooled connection would see its own empty database.
                kwargs["poolclass"] = StaticPool
            # sqlite3 keeps 128 prepared statements by default; with every batch size a statement
            # of its own that held ~40 MB and grew with load. 16 keeps the hot ones, bounded.
            kwargs["connect_args"] = {"timeout": 5, "cached_statements": 16}
        else:
            kwargs.update(pool_size=10, max_overflow=20, pool_pre_ping=True, pool_recycle=1800)
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        if self.dialect == "sqlite":
            sa.event.listen(self.engine.sync_engine, "connect", _on_sqlite_connect)

    @property
    def display_url(self) -> str:
        return self.url.render_as_string(hide_password=True)

    async def open(self, migrate: bool | None = None) -> "Store":
        """Migrate (default; LOCKGATE_MIGRATE_ON_START=false turns it off), else only refuse a newer schema."""
        if migrate is None:
            migrate = _migrate_on_start()
        if migrate:
            await self.upgrade()
        elif await self.schema_state() == "ahead":
            raise SchemaAhead(self._ahead_message(await self.current()))
        return self

    async def schema_state(self) -> str:
        """`at_head`, `behind` (empty or older: a migrate step will bring it up) or `ahead` (newer code ran)."""
        current = await self.current()
        heads = _script_heads()
        if current is not None and set(current.split(",")) == heads:
            return "at_head"
        if current is not None and not all(_known_revision(r) for r in current.split(",")):
            return "ahead"
        return "behind"

    def _ahead_message(self, current: str | None) -> str:
        return (
            f"{self.display_url}: the database schema is at revision {current}, which this "
            f"Lockgate does not know (its head is {','.join(sorted(_script_heads()))}): it was migrated by a "
            "newer version. Run that version, or roll the database back with it before downgrading."
        )

    async def aclose(self) -> None:
        await self.engine.dispose()

    # --- migrations ----------------------------------------------------------------

    async def upgrade(self, revision: str = "head") -> None:
        """Apply migrations up to `revision`, one process at a time."""
        lock_fd = await self._lock_sqlite_file()
        try:
            async with self.engine.begin() as conn:
                if self.dialect == "postgresql":
                    await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
                current = await conn.run_sync(_current_revision)
                if current is not None and not all(_known_revision(r) for r in current.split(",")):
                    raise SchemaAhead(self._ahead_message(current))
                if not (revision == "head" and current is not None and set(current.split(",")) == _script_heads()):
                    await conn.run_sync(_run_alembic, "upgrade", revision)
        finally:
            if lock_fd is not None:
                os.close(lock_fd)  # releases the flock
        log.info("database_ready", url=self.display_url, revision=await self.current())

    async def downgrade(self, revision: str) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(_run_alembic, "downgrade", revision)

    async def current(self) -> str | None:
        async with self.engine.connect() as conn:
            return await conn.run_sync(_current_revision)

    async def _lock_sqlite_file(self) -> int | None:
        """SQLite has no advisory locks: a lock file beside the database serialises migrating workers."""
        if self.dialect != "sqlite" or self.url.database in (None, "", ":memory:"):
            return None
        path = f"{self.url.database}.migrate-lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
        return fd

    def connect(self) -> Any:
        """`async with store.connect() as conn:` for reads."""
        return self.engine.connect()

    def begin(self) -> Any:
        """`async with store.begin() as conn:` for writes (commits on success)."""
        return self.engine.begin()


def alembic_config(connection: sa.Connection | None = None) -> Any:
    """An Alembic Config pointing at the migrations inside the installed package (no alembic.ini needed)."""
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("version_locations", str(MIGRATIONS / "versions"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _run_alembic(connection: sa.Connection, action: str, revision: str) -> None:
    from alembic import command

    cfg = alembic_config(connection)
    getattr(command, action)(cfg, revision)


@functools.cache
def _revisions() -> dict[str, tuple[str, ...]]:
    """Each shipped migration's revision -> the revisions it follows, read from the scripts' own
    `revision =` / `down_revision =` lines once per process (the scripts never change while it runs).

    Alembic itself is imported only when a migration must run: a restart on a schema already at
    head (the common case) saves its ~12 MB resident and its import time. A test checks this
    reading against Alembic's own.
    """
    revisions: dict[str, tuple[str, ...]] = {}
    for path in sorted((MIGRATIONS / "versions").glob("*.py")):
        text = path.read_text(encoding="utf-8")
        rev = _REVISION.search(text)
        if rev is None:
            continue
        down = _DOWN_REVISION.search(text)
        revisions[rev.group(1)] = tuple(_QUOTED.findall(down.group(1))) if down else ()
    return revisions


_REVISION = re.compile(r'^revision\s*(?::[^=]+)?=\s*["\']([^"\']+)["\']', re.MULTILINE)
_DOWN_REVISION = re.compile(r"^down_revision\s*(?::[^=]+)?=\s*(.+)$", re.MULTILINE)
_QUOTED = re.compile(r'["\']([^"\']+)["\']')


def _script_heads() -> set[str]:
    revisions = _revisions()
    followed = {down for downs in revisions.values() for down in downs}
    return set(revisions) - followed


def _known_revision(revision: str) -> bool:
    return revision in _revisions()


def _current_revision(connection: sa.Connection) -> str | None:
    # Alembic's own table, read with plain SQL (no Alembic import for a check).
    if not sa.inspect(connection).has_table("alembic_version"):
        return None
    heads = sorted(row[0] for row in connection.execute(sa.text("SELECT version_num FROM alembic_version")))
    return ",".join(heads) if heads else None
