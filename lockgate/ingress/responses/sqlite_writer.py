"""The SQLite side of the group commit: a connection of its own, in a thread of its own.

Through SQLAlchemy's async engine, one transaction on aiosqlite costs ~1.2 ms of CPU
(a pool checkout, and a thread hop each for begin, execute, commit and the reset on return);
the same INSERT and COMMIT on a plain sqlite3 connection cost ~0.25 ms, nearly all of it the
commit's fsync. So the writer keeps one sqlite3 connection (the engine's PRAGMAs,
store/db.py) and runs BEGIN IMMEDIATE, executemany, COMMIT as one call in its one thread.
The durability is the engine's: a row is committed (synchronous=FULL in WAL) before its save returns.
"""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from lockgate.store.db import sqlite_setup


class SqliteInsert:
    """`await insert(rows)`: the rows (dicts keyed by column) in one committed transaction."""

    def __init__(self, engine: AsyncEngine, table: sa.Table) -> None:
        self.path = str(engine.url.database)
        self.columns = [c.name for c in table.columns]
        self.sql = f"INSERT INTO {table.name} ({', '.join(self.columns)}) VALUES ({', '.join('?' * len(self.columns))})"
        # The engine's own conversions for what is not text already (the timestamp's format);
        # the JSON columns come encoded (store.py).
        dialect = engine.dialect
        procs = {
            c.name: c.type.dialect_impl(dialect).bind_processor(dialect) for c in table.columns if not isinstance(c.type, sa.JSON)
        }
        self.procs = {name: proc for name, proc in procs.items() if proc is not None}
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="lockgate-responses-sqlite")
        self._conn: sqlite3.Connection | None = None

    @staticmethod
    def usable(engine: AsyncEngine) -> bool:
        """A file database (an in-memory one lives in the engine's only connection)."""
        return engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:")

    async def __call__(self, rows: list[dict[str, Any]]) -> None:
        procs = self.procs
        values = [tuple(procs[c](r[c]) if c in procs else r[c] for c in self.columns) for r in rows]
        await asyncio.get_running_loop().run_in_executor(self._executor, self._write, values)

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=5, isolation_level=None, check_same_thread=False, cached_statements=4)
        sqlite_setup(conn)  # the engine's PRAGMAs
        return conn

    def _write(self, values: list[tuple[Any, ...]]) -> None:
        conn = self._conn if self._conn is not None else self._open()
        self._conn = conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(self.sql, values)
            conn.execute("COMMIT")
        except BaseException:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                conn.close()  # in a state we cannot tell: a fresh connection next time
                self._conn = None
            raise

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def aclose(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._close)
        self._executor.shutdown(wait=False)
