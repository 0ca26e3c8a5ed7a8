"""The one-dimension usage roll-ups the console reads (usage_rollup*, migration 0009), on SQLite and PostgreSQL.

They must always equal usage_daily grouped by that dimension: written in the records' transaction
(concurrent writers and replays included), backfilled for a database that had usage before 0009,
and read by the usage page a page of groups at a time with the same figures as /admin/usage.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from lockgate.records import RequestRecord
from lockgate.store import Store
from lockgate.usage.queries import report
from lockgate.usage.rows import rollups, to_row
from lockgate.usage.store import UsageStore
from lockgate.usage.tables import ROLLUP_SUMS, usage_daily, usage_latency_daily
from tests.console_support import call, console_client, engine, login, walk_pages
from tests.dbs import db_url  # noqa: F401

T0 = dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC).timestamp()
ADMIN = {"authorization": "Bearer sk-console-master-0123456789"}
DIMS = {"key": "key_id", "team": "team", "model": "model"}


def _row(i: int, **kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = dict(
        request_id=f"r{i}", endpoint="chat", public_model=f"m{i % 3}", status=502 if i % 7 == 0 else 200,
        started_at=T0 + (i % 4) * 86400, latency_ms=20.0 + (i * 37) % 900, key_id=f"k{i % 5}" if i % 11 else None,
        team=f"t{i % 2}" if i % 3 else None, prompt_tokens=i, completion_tokens=2 * i, cached_tokens=i % 4,
        cost_usd=None if i % 13 == 0 else i / 1000,
    )  # fmt: skip
    base.update(kw)
    return to_row(RequestRecord(**base))


async def _table(conn: Any, sql: str) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    rows = (await conn.execute(sa.text(sql))).all()
    return {tuple(str(v) for v in r[:3]): tuple(round(float(v), 9) for v in r[3:]) for r in rows}


async def assert_rollups_match(store: Store) -> None:
    """usage_rollup* == usage_daily / usage_latency_daily grouped by each dimension (every sum, every bucket)."""
    sums = ", ".join(f"SUM({c})" for c in ROLLUP_SUMS)
    cols = ", ".join(ROLLUP_SUMS)
    async with store.connect() as conn:
        for dim, col in {"all": "''", **DIMS}.items():
            group = "day" if dim == "all" else f"day, {col}"
            want = await _table(conn, f"SELECT '{dim}', day, {col}, {sums} FROM usage_daily GROUP BY {group}")
            got = await _table(conn, f"SELECT dim, day, value, {cols} FROM usage_rollup WHERE dim = '{dim}'")
            assert got == want and want, dim
            want_h = await _table(
                conn, f"SELECT '{dim}', day, {col} || ':' || bucket, SUM(count) FROM usage_latency_daily GROUP BY {group}, bucket"
            )
            got_h = await _table(
                conn, f"SELECT dim, day, value || ':' || bucket, count FROM usage_rollup_latency WHERE dim = '{dim}'"
            )
            assert got_h == want_h and want_h, dim


async def test_rollups_are_written_with_the_records(db_url: str) -> None:
    store = await Store(db_url).open()
    try:
        writer = UsageStore(store.engine)
        rows = [_row(i) for i in range(1, 400)]
        rows += [_row(1000 + i, parent_request_id=f"r{i}", attempt=1, status=502) for i in range(1, 20)]  # attempts
        batches = [rows[i : i + 37] for i in range(0, len(rows), 37)]
        # Concurrent writers (one roll-up row per day is shared by all of them), then every batch replayed.
        assert sum(await asyncio.gather(*(writer.write(b) for b in batches))) == len(rows)
        assert sum(await asyncio.gather(*(writer.write(b) for b in batches))) == 0
        await assert_rollups_match(store)
        async with store.connect() as conn:
            total = (await conn.execute(sa.text("SELECT SUM(requests) FROM usage_rollup WHERE dim = 'all'"))).scalar()
        assert total == 399  # requests only: an attempt is not a request

        start, end = dt.date(2026, 11, 20), dt.date(2026, 11, 23)
        for group_by in ("key", "team", "model", "day"):
            full = await report(store.engine, group_by, start, end)
            assert sum(r["requests"] for r in full) == 399
            # Paged (keyset on the group): the same rows, percentiles too, in the same order.
            paged: list[dict[str, Any]] = []
            after = None
            while True:
                page = await report(store.engine, group_by, start, end, after=after, limit=2)
                if not page:
                    break
                paged += page
                last = page[-1][{"key": "key_id"}.get(group_by, group_by)]
                after = dt.date.fromisoformat(last) if group_by == "day" else (last or "")
            assert paged == full, group_by
        # A filter the one-dimension roll-ups cannot answer (a key's usage by model) reads usage_daily: same totals.
        by_model = await report(store.engine, "model", start, end, key_id="k1")
        by_day = await report(store.engine, "day", start, end, key_id="k1")
        assert sum(r["requests"] for r in by_model) == sum(r["requests"] for r in by_day) > 0
        assert round(sum(r["cost_usd"] for r in by_model), 6) == round(sum(r["cost_usd"] for r in by_day), 6)
    finally:
        await store.aclose()


async def test_the_migration_backfills_a_database_with_usage(db_url: str) -> None:
    store = Store(db_url)
    try:
        await store.upgrade("0008_max_parallel")  # before the one-dimension roll-ups
        daily, hist = rollups([_row(i) for i in range(1, 300)])
        async with store.begin() as conn:  # what the writer of 0008 kept
            await conn.execute(usage_daily.insert(), daily)
            await conn.execute(usage_latency_daily.insert(), hist)
        await store.upgrade("head")
        await assert_rollups_match(store)
        # The writer carries on from the backfilled rows.
        assert await UsageStore(store.engine).write([_row(i) for i in range(300, 350)]) == 50
        await assert_rollups_match(store)
        day = dt.date(2026, 11, 20)
        assert sum(r["requests"] for r in await report(store.engine, "day", day, day + dt.timedelta(days=3))) == 349
        # Reversible: down to 0008 and up again rebuilds the same roll-ups.
        await store.downgrade("0008_max_parallel")
        async with store.connect() as conn:
            assert not await conn.run_sync(lambda c: sa.inspect(c).has_table("usage_rollup"))
        await store.upgrade("head")
        await assert_rollups_match(store)
    finally:
        await store.aclose()


def test_usage_page_pages_through_groups_with_the_api_figures(tmp_path: Path) -> None:
    with console_client(tmp_path) as c:
        rows = [_row(i, key_id=f"key-{i % 230:03d}", started_at=dt.datetime.now(dt.UTC).timestamp()) for i in range(1, 700)]
        assert call(c, UsageStore(engine(c)).write, rows) == 699
        login(c)
        api = {r["key_id"]: r for r in c.get("/admin/usage", params={"group_by": "key"}, headers=ADMIN).json()["data"]}
        assert len(api) == 230
        seen: list[str] = []
        pages = walk_pages(c, "/ui/usage?group_by=key")
        for text in pages:
            keys = re.findall(r"<tr><td>(key-\d+)</td><td>([\d,]+)</td>", text)
            assert 0 < len(keys) <= 50
            for key, requests in keys:
                assert int(requests.replace(",", "")) == api[key]["requests"]
            seen += [k for k, _ in keys]
        assert len(pages) == 5 and seen == sorted(api)
        csv_rows = c.get("/ui/usage.csv", params={"group_by": "key"}).text.strip().splitlines()
        assert len(csv_rows) == 1 + 230  # the CSV has every group
        assert c.get("/ui/usage", params={"group_by": "day", "after": "yesterday"}).status_code == 400
        assert c.get("/ui/usage", params={"group_by": "key", "after": "x" * 201}).status_code == 400


async def test_rebuild_rollups_after_a_rolling_upgrade(db_url: str, tmp_path: Path) -> None:
    """`lockgate db rebuild-rollups`: roll-ups that missed an old replica's writes equal usage_daily again."""
    import subprocess
    import sys

    import yaml

    store = await Store(db_url).open()
    try:
        await UsageStore(store.engine).write([_row(i) for i in range(1, 200)])
        days = sorted({r[0] for r in await _rows(store, "SELECT DISTINCT day FROM usage_rollup")})
        assert len(days) == 4
        # An old replica's writes: usage_daily has them, the roll-ups do not (here: every day's figures short).
        async with store.engine.begin() as conn:
            await conn.execute(sa.text("UPDATE usage_rollup SET requests = requests - 1, cost_usd = cost_usd - 0.5"))
            await conn.execute(sa.text("DELETE FROM usage_rollup_latency WHERE dim = 'key'"))
        config = tmp_path / "lockgate.yaml"
        config.write_text(
            yaml.safe_dump(
                {"database": {"url": db_url}, "models": [{"name": "m", "deployments": [{"provider": "mock", "model": "m"}]}]}
            )
        )
        cli = [sys.executable, "-m", "lockgate", "db", "rebuild-rollups", "--config", str(config)]

        # Only the last two days: the first two stay short, which shows --since is honoured.
        since = subprocess.run([*cli, "--since", str(days[2])], capture_output=True, text=True, timeout=120)
        assert since.returncode == 0, since.stderr
        async with store.connect() as conn:
            short = (
                await conn.execute(sa.text(f"SELECT COUNT(*) FROM usage_rollup_latency WHERE dim = 'key' AND day < '{days[2]}'"))
            ).scalar()
        assert short == 0
        with pytest.raises(AssertionError):  # the days before --since are still short
            await assert_rollups_match(store)

        every = subprocess.run(cli, capture_output=True, text=True, timeout=120)
        assert every.returncode == 0 and "rebuilt for every day" in every.stdout, every.stderr
        await assert_rollups_match(store)
        bad = subprocess.run([*cli, "--since", "yesterday"], capture_output=True, text=True, timeout=120)
        assert bad.returncode == 2 and "not a date" in bad.stderr
    finally:
        await store.aclose()


async def _rows(store: Store, sql: str) -> list[Any]:
    async with store.connect() as conn:
        return list((await conn.execute(sa.text(sql))).all())
