"""The SQL writer on SQLite and PostgreSQL: idempotent by request id, roll-ups counted once, reports from roll-ups."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
import sqlalchemy as sa

from lockgate.records import RequestRecord
from lockgate.store import Store
from lockgate.usage.budgets import BudgetAdmission, MemoryCounters
from lockgate.usage.queries import report
from lockgate.usage.rows import to_row
from lockgate.usage.store import UsageStore
from tests.dbs import db_url  # noqa: F401

T0 = dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC).timestamp()


def _row(rid: str, **kw: object) -> dict:
    base: dict[str, object] = dict(
        request_id=rid, endpoint="chat", public_model="m", status=200, started_at=T0, latency_ms=50.0,
        key_id="k1", team="t1", prompt_tokens=100, completion_tokens=10, cached_tokens=40, cost_usd=0.5,
    )  # fmt: skip
    base.update(kw)
    return to_row(RequestRecord(**base))  # type: ignore[arg-type]


async def test_replayed_batches_change_nothing(db_url: str) -> None:
    store = await Store(db_url).open()
    try:
        writer = UsageStore(store.engine)
        batch = [_row("a"), _row("b", status=500, cost_usd=None), _row("b.1", parent_request_id="b", attempt=1, status=502)]
        assert await writer.write(batch) == 3
        assert await writer.write(batch) == 0  # a replay of the same batch
        assert await writer.write([_row("a"), _row("c", public_model="n", key_id="k2", started_at=T0 + 86400)]) == 1
        day = dt.date(2026, 11, 20)
        rows = await report(store.engine, "key", day, day + dt.timedelta(days=1))
        k1 = next(r for r in rows if r["key_id"] == "k1")
        assert k1["requests"] == 2 and k1["errors"] == 1 and k1["cost_usd"] == pytest.approx(0.5)
        assert k1["prompt_tokens"] == 200 and k1["cached_tokens"] == 80 and k1["cost_unknown_requests"] == 1
        assert k1["latency_ms_p50"] == pytest.approx(50, rel=0.06)
        by_day = await report(store.engine, "day", day, day + dt.timedelta(days=1))
        assert [(r["day"], r["requests"]) for r in by_day] == [("2026-11-20", 2), ("2026-11-21", 1)]
        only_first_day = await report(store.engine, "model", day, day)
        assert sum(r["requests"] for r in only_first_day) == 2
        mine = await report(store.engine, "day", day, day + dt.timedelta(days=1), key_id="k2")
        assert [r["requests"] for r in mine] == [1]

        # Budgets rebuild from the same roll-ups.
        budgets = BudgetAdmission(MemoryCounters(), today=lambda: day)
        await budgets.rebuild(store.engine)
        counters = budgets.counters.values  # type: ignore[attr-defined]
        assert counters["key:k1:daily:2026-11-20"] == 500_000_000 and counters["team:t1:total:all"] == 1_000_000_000
    finally:
        await store.aclose()


async def test_a_batch_committed_and_also_spooled_is_stored_once_when_replayed(db_url: str, tmp_path) -> None:
    """The commit lands but its answer comes after the sink's timeout: the batch is in the database
    and in the spool; the replay writes it again, and the database keeps one row, counted once."""
    from lockgate.usage.sink import UsageSink

    store = await Store(db_url).open()
    try:
        writer = UsageStore(store.engine)
        late = {"ack_s": 0.3}

        async def commit_then_answer_late(rows: list[dict]) -> int:
            written = await asyncio.shield(writer.write(rows))  # the commit itself is not cut short
            await asyncio.sleep(late["ack_s"])
            return written

        sink = UsageSink(commit_then_answer_late, tmp_path, batch_size=10, flush_interval_s=10, write_timeout_s=0.1)
        sink.accept(RequestRecord(request_id="dup", endpoint="chat", public_model="m", status=200,
                                   started_at=T0, latency_ms=50.0, key_id="k1", prompt_tokens=100, cost_usd=0.5))  # fmt: skip
        await sink.flush()
        assert sink.spool.pending and sink.write_failures == 1
        day = dt.date(2026, 11, 20)
        assert [r["requests"] for r in await report(store.engine, "key", day, day)] == [1]  # it did commit
        late["ack_s"] = 0.0
        await asyncio.sleep(0.5)  # the late write's answer arrives (the sink never cancels a write)
        sink._retry_at = 0.0  # the retry delay has passed
        await sink.flush()  # the replay: the same batch written a second time
        assert not sink.spool.pending
        async with store.engine.connect() as conn:
            stored = (await conn.execute(sa.text("SELECT COUNT(*) FROM usage_records WHERE request_id = 'dup'"))).scalar()
        assert stored == 1
        (only,) = await report(store.engine, "key", day, day)
        assert only["requests"] == 1 and only["prompt_tokens"] == 100 and only["cost_usd"] == pytest.approx(0.5)
        await sink.aclose()
    finally:
        await store.aclose()


async def test_cli_prints_the_table(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import asyncio
    import subprocess
    import sys
    import time

    import yaml

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    store = await Store(url).open()
    try:
        now = time.time()
        await UsageStore(store.engine).write(
            [_row("a", started_at=now), _row("b", started_at=now, public_model="other", status=429, cost_usd=0.25)]
        )
    finally:
        await store.aclose()
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        yaml.safe_dump({"database": {"url": url}, "models": [{"name": "m", "deployments": [{"provider": "mock", "model": "m"}]}]})
    )
    run = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "lockgate", "usage", "--config", str(cfg), "--by", "model", "--since", "7d"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[1].split()[:3] == ["model", "requests", "prompt"]
    assert lines[2].split()[:2] == ["m", "1"] and lines[3].split()[:2] == ["other", "1"]
    assert lines[-1].split()[:2] == ["TOTAL", "2"] and "0.750000" in lines[-1]
    bad = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "lockgate", "usage", "--config", str(cfg), "--since", "soon"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2 and "--since" in bad.stderr


async def test_budget_counters_in_redis_are_shared_and_rebuilt_only_where_missing() -> None:
    import secrets

    from lockgate.auth import Principal
    from lockgate.config import RedisConfig
    from lockgate.context import RequestContext
    from lockgate.errors import BudgetExceeded
    from lockgate.redis_client import SharedRedis
    from lockgate.usage.redis_budgets import RedisCounters
    from tests.harness import require_service

    require_service("Redis", "127.0.0.1", 6379)
    prefix = f"lockgate-test:{secrets.token_hex(6)}:budget:"
    day = dt.date(2026, 11, 20)
    replicas = []
    for _ in range(2):
        shared = SharedRedis(RedisConfig(url="redis://127.0.0.1:6379/0"))  # one client per replica
        counters = RedisCounters(shared, prefix=prefix)
        counters.start()
        replicas.append(BudgetAdmission(counters, today=lambda: day))
    a, b = replicas
    key = Principal(key_id="k1", max_budget_usd=0.02, budget_period="monthly")
    ctx = RequestContext(request_id="r1", endpoint="chat", principal=key)
    try:
        await a.counters.load({"key:k1:monthly:2026-11-01": ("monthly", 5_000_000)})  # type: ignore[attr-defined]
        await b.counters.load({"key:k1:monthly:2026-11-01": ("monthly", 999)})  # type: ignore[attr-defined]  # NX: ignored
        a.settle(ctx, type("R", (), {"cost_usd": 0.015})())
        for _ in range(50):  # the increment leaves in the background
            if (await b.counters.get(["key:k1:monthly:2026-11-01"]))[0] == 20_000_000:
                break
            await asyncio.sleep(0.02)
        with pytest.raises(BudgetExceeded):
            await b.admit(ctx)  # the other replica sees the spend
    finally:
        await a.counters.redis.delete(*[k async for k in a.counters.redis.scan_iter(prefix + "*")])  # type: ignore[attr-defined]
        for r in replicas:
            await r.aclose()
            await r.counters._shared.aclose()  # type: ignore[attr-defined]
