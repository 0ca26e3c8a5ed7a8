"""Retention of stored Responses (`responses.retention_days`): `lockgate serve` purges expired rows in the
background, in batches, on SQLite and PostgreSQL. Rows are aged from the outside (created_at set back in SQL)."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
import sqlalchemy as sa

from lockgate.store import Store
from lockgate.store.tables import responses
from tests.dbs import db_url  # noqa: F401
from tests.harness import MASTER_KEY, GatewayProcess
from tests.usage_helpers import fetch

MOCK = {"name": "mock-gpt", "deployments": [{"provider": "mock", "model": "mock-gpt", "mock_response": "Kept for a while."}]}


def serve(db: str, workdir: Path, **responses_config: float) -> GatewayProcess:
    config = {"auth": {"master_key": MASTER_KEY}, "database": {"url": db}, "models": [MOCK], "responses": responses_config}
    return GatewayProcess(config, workdir).start()


async def _age(db: str, ids: list[str], days: float) -> None:
    store = Store(db)
    try:
        async with store.engine.begin() as conn:
            old = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
            await conn.execute(responses.update().where(responses.c.id.in_(ids)).values(created_at=old))
    finally:
        await store.aclose()


def age(db: str, ids: list[str], days: float) -> None:
    """Set these responses' created_at `days` back, as if they had been stored then."""
    asyncio.run(_age(db, ids, days))


def stored_ids(db: str) -> set[str]:
    return {row["id"] for row in fetch(db, "SELECT id FROM responses")}


@pytest.fixture
def gateway(db_url: str, tmp_path: Path) -> Iterator[GatewayProcess]:
    # A batch of 2 against 5 expired rows: the purge must loop over several transactions.
    gw = serve(db_url, tmp_path, retention_days=7, purge_interval_s=0.2, purge_batch_size=2)
    gw.db_url = db_url  # type: ignore[attr-defined]
    yield gw
    gw.stop()


def test_expired_responses_are_purged_in_batches(gateway: GatewayProcess) -> None:
    db = gateway.db_url  # type: ignore[attr-defined]
    client = openai.OpenAI(base_url=gateway.url, api_key=MASTER_KEY, max_retries=0, timeout=20)
    created = [client.responses.create(model="mock-gpt", input=f"turn {i}") for i in range(7)]
    expired, fresh = [r.id for r in created[:5]], [r.id for r in created[5:]]
    assert stored_ids(db) >= set(expired + fresh)

    age(db, expired, days=8)  # past the 7 days of retention
    age(db, fresh[:1], days=6)  # old, but still inside it
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and stored_ids(db) & set(expired):
        time.sleep(0.1)
    assert not stored_ids(db) & set(expired), "the purge did not delete every expired response"

    for response_id in expired:
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve(response_id)
    with pytest.raises(openai.BadRequestError) as chained:
        client.responses.create(model="mock-gpt", input="and then?", previous_response_id=expired[0])
    assert chained.value.code == "previous_response_not_found"
    for response_id in fresh:
        assert client.responses.retrieve(response_id).output_text == "Kept for a while."
    assert "responses_purged" in gateway.logs()


def test_retention_zero_keeps_responses_forever(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'keep.db'}"
    gw = serve(db, tmp_path, retention_days=0, purge_interval_s=0.1)
    try:
        client = openai.OpenAI(base_url=gw.url, api_key=MASTER_KEY, max_retries=0, timeout=20)
        kept = client.responses.create(model="mock-gpt", input="keep me")
        age(db, [kept.id], days=3650)
        time.sleep(1.0)  # ten purge intervals, had there been a purge
        assert client.responses.retrieve(kept.id).id == kept.id
    finally:
        gw.stop()


def test_the_expiry_query_uses_the_created_at_index(db_url: str, tmp_path: Path) -> None:
    # The purge's lookup (oldest expired first) must not scan the whole table on a large store.
    gw = serve(db_url, tmp_path, retention_days=30)
    gw.stop()
    explain = "EXPLAIN QUERY PLAN" if db_url.startswith("sqlite") else "EXPLAIN"
    sql = f"{explain} SELECT id FROM responses WHERE created_at < :t ORDER BY created_at LIMIT 10"
    plan = " ".join(str(v) for row in _explain(db_url, sql) for v in row.values())
    assert "ix_responses_created_at" in plan, plan


def _explain(db: str, sql: str) -> list[dict[str, object]]:
    async def run() -> list[dict[str, object]]:
        store = Store(db)
        try:
            async with store.engine.connect() as conn:
                if not db.startswith("sqlite"):  # a tiny table is scanned anyway: ask whether the index can serve
                    await conn.execute(sa.text("SET enable_seqscan = off"))
                result = await conn.execute(sa.text(sql), {"t": dt.datetime.now(dt.UTC)})
                return [dict(r._mapping) for r in result]
        finally:
            await store.aclose()

    return asyncio.run(run())
