"""The SQL store: URL mapping to async drivers and Alembic migrations on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa

from lockgate.store import Store, async_url
from tests.dbs import db_url  # noqa: F401


def test_urls_map_to_async_drivers() -> None:
    assert async_url("sqlite:///lockgate.db").drivername == "sqlite+aiosqlite"
    assert async_url("sqlite:///lockgate.db").database == "lockgate.db"
    assert async_url("postgresql://u@127.0.0.1:5432/db").drivername == "postgresql+asyncpg"
    assert async_url("postgres://u@h/db").drivername == "postgresql+asyncpg"
    assert async_url("postgresql+asyncpg://u@h/db").drivername == "postgresql+asyncpg"


async def test_migrations_apply_repeat_and_roll_back(db_url: str) -> None:
    store = await Store(db_url).open()
    try:
        assert (await store.current()) is not None
        head = await store.current()
        await store.upgrade()  # a second run is a no-op
        assert await store.current() == head
        async with store.connect() as conn:
            tables = await conn.run_sync(lambda c: sa.inspect(c).get_table_names())
        assert "api_keys" in tables
        await store.downgrade("base")
        assert await store.current() is None
        await store.upgrade()
        assert await store.current() == head
    finally:
        await store.aclose()


async def test_concurrent_start_ups_take_turns(db_url: str) -> None:
    # Several workers starting at once must not trip over each other's migrations.
    stores = [Store(db_url) for _ in range(3)]
    try:
        await asyncio.gather(*(s.open() for s in stores))
        assert len({await s.current() for s in stores}) == 1
    finally:
        for s in stores:
            await s.aclose()


def test_workers_migrate_a_fresh_database_together(db_url: str, start_gateway, fake_openai) -> None:
    """Two worker processes start on an empty database at once; both serve keys from it."""
    import httpx

    from tests.conftest import basic_config
    from tests.harness import MASTER_KEY

    config = basic_config(fake_openai)
    config["database"] = {"url": db_url}
    gw = start_gateway(config, workers=2)
    admin = {"authorization": f"Bearer {MASTER_KEY}"}
    created = httpx.post(f"{gw.base_url}/admin/keys", json={"name": "w"}, headers=admin, timeout=10)
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    for _ in range(6):  # spread over both workers
        resp = httpx.post(
            f"{gw.url}/chat/completions",
            headers={"authorization": f"Bearer {key}"},
            json={"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]},
            timeout=10,
        )
        assert resp.status_code == 200, resp.text
    assert "Traceback" not in gw.logs()
