"""Helpers for usage tests: read what the gateway stored, straight from the database."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import sqlalchemy as sa

from lockgate.store import Store


async def _fetch(url: str, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    store = Store(url)
    try:
        async with store.engine.connect() as conn:
            result = await conn.execute(sa.text(sql), params or {})
            return [dict(r._mapping) for r in result]
    finally:
        await store.aclose()


def fetch(url: str, sql: str, **params: Any) -> list[dict[str, Any]]:
    return asyncio.run(_fetch(url, sql, params))


def records(url: str) -> list[dict[str, Any]]:
    return fetch(url, "SELECT * FROM usage_records ORDER BY started_at")


def wait_for_records(url: str, n: int, timeout_s: float = 10.0) -> list[dict[str, Any]]:
    """Poll until at least n records are stored (the writer flushes every flush_interval_s)."""
    deadline = time.monotonic() + timeout_s
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        try:
            rows = records(url)
        except Exception:  # tables not there yet
            rows = []
        if len(rows) >= n:
            return rows
        time.sleep(0.1)
    return rows


def usage_config(base: dict[str, Any], db_url: str, **usage: Any) -> dict[str, Any]:
    return {**base, "database": {"url": db_url}, "usage": {"flush_interval_s": 0.1, **usage}}
