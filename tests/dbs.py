"""Databases for tests: a SQLite file, or a fresh PostgreSQL database per use (dropped afterwards).

Import the `db_url` fixture into a test module to run its tests on both back-ends:

    from tests.dbs import db_url  # noqa: F401
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.harness import require_service

PG_ADMIN_URL = os.environ.get("LOCKGATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def create_pg_database() -> str:
    """A new, empty database on the test server; its URL (plain postgresql://, as a user writes it)."""
    name = f"lockgate_t_{os.getpid()}_{secrets.token_hex(4)}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{name}"


def drop_pg_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def database(kind: str, directory: Path) -> Iterator[str]:
    """A database URL of one kind ("sqlite" | "postgresql"), removed afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{directory / 'lockgate-test.db'}"
        return
    require_service("PostgreSQL", "127.0.0.1", 5432)
    url = create_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(url)


BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL on each back-end: a SQLite file in tmp_path, or a fresh PostgreSQL database."""
    with database(request.param, tmp_path) as url:
        yield url


@pytest.fixture(scope="module", params=BACKENDS)
def module_db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """As db_url, shared by a whole module (for a gateway that serves several tests)."""
    with database(request.param, tmp_path_factory.mktemp("db")) as url:
        yield url
