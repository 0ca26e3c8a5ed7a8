"""The console at scale: seed a database with request records and keys, time every page, show the plans.

    .venv/bin/python bench/console_scale.py                       # PostgreSQL, 1,000,000 records, 100,000 keys
    .venv/bin/python bench/console_scale.py --db sqlite           # the same on a SQLite file
    .venv/bin/python bench/console_scale.py --records 100000 --keys 10000 --runs 10

PostgreSQL: a throwaway database on the server of LOCKGATE_TEST_PG (default postgres@127.0.0.1:5432),
dropped at the end; SQLite: a file in a temporary directory. The schema is migrated to 0008 (before
the one-dimension roll-ups), seeded with SQL (30 days of records over 1,000 active keys, 3 models,
10 teams, 2 % errors, latencies spread over 50-2,050 ms, and the (day, key, team, model) roll-ups
as the usage writer keeps them), then migrated to head, so the timing includes 0009's backfill of
an existing database, then VACUUM ANALYZE (ANALYZE on SQLite). Then each console page is timed in process (ASGI, as the server runs it:
its time, not the network's): p50/p95 per page, and the plans of the heavy queries.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PG_ADMIN = os.environ.get("LOCKGATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
MASTER = "sk-bench-console-master"
BEFORE_ROLLUPS = "0008_max_parallel"  # the last revision without usage_rollup

# A latency that looks random over 50-2,050 ms (a multiplicative hash of the row number), so the
# latency histograms have as many buckets per group as real traffic gives them.
LATENCY = "(50 + (g * 2654435761) % 2001)"

SEED_PG = [
    # Keys: `keys` of them, created over the last year; every 10th in a team, every 50th revoked.
    """
    INSERT INTO api_keys (id, key_hash, key_prefix, key_last4, name, team_id, created_at, revoked)
    SELECT 'key_' || lpad(to_hex(g), 16, '0'), md5(g::text) || md5((g + 1)::text), 'lg-' || substr(md5(g::text), 1, 8),
           substr(md5(g::text), 28, 4), 'bulk-' || g, CASE WHEN g % 10 = 0 THEN 'team-' || (g % 100 / 10) END,
           now() - (g || ' minutes')::interval, g % 50 = 0
    FROM generate_series(1, :keys) AS g
    """,
    # Records: `records` requests over 30 days, by the first 1,000 keys.
    f"""
    INSERT INTO usage_records (request_id, started_at, endpoint, model, key_id, user_id, team, provider, deployment,
        upstream_model, status, error_type, error_message, streamed, partial, usage_estimated, attempts, prompt_tokens,
        completion_tokens, cached_tokens, cache_creation_tokens, reasoning_tokens, cost_usd, cost_unknown, latency_ms)
    SELECT 'req_' || lpad(to_hex(g), 24, '0'),
           (now() AT TIME ZONE 'UTC') - ((g::float / :records) * interval '30 days'),
           'chat', 'model-' || (g % 3), 'key_' || lpad(to_hex(g % 1000 + 1), 16, '0'), 'user-' || (g % 200),
           'team-' || (g % 10), 'openai', 'dep-' || (g % 3) || '-' || (g % 2), 'up-' || (g % 3),
           CASE WHEN g % 50 = 0 THEN 502 ELSE 200 END, CASE WHEN g % 50 = 0 THEN 'provider_bad_gateway' END,
           CASE WHEN g % 50 = 0 THEN 'upstream answered 502' END,
           g % 4 = 0, false, false, 1, 100 + g % 900, 20 + g % 300, 0, 0, 0, (g % 1000) * 0.000001, false, {LATENCY}
    FROM generate_series(1, CAST(:records AS bigint)) AS g
    """,
    # The (day, key, team, model) roll-ups, as the usage writer keeps them.
    """
    INSERT INTO usage_daily (day, key_id, team, model, requests, errors, prompt_tokens, completion_tokens, cached_tokens,
        cache_creation_tokens, reasoning_tokens, cost_usd, cost_unknown)
    SELECT started_at::date, coalesce(key_id, ''), coalesce(team, ''), coalesce(model, ''), count(*),
           count(*) FILTER (WHERE status >= 400), sum(prompt_tokens), sum(completion_tokens), 0, 0, 0, sum(cost_usd), 0
    FROM usage_records GROUP BY 1, 2, 3, 4
    """,
    """
    INSERT INTO usage_latency_daily (day, key_id, team, model, bucket, count)
    SELECT started_at::date, coalesce(key_id, ''), coalesce(team, ''), coalesce(model, ''),
           floor(ln(latency_ms) / ln(1.1))::int, count(*)
    FROM usage_records GROUP BY 1, 2, 3, 4, 5
    """,
]

_SERIES = "WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < :n) "
_STAMP = "strftime('%Y-%m-%d %H:%M:%S', 'now', '-' || ({secs}) || ' seconds') || '.000000'"
SEED_SQLITE = [
    """
    INSERT INTO api_keys (id, key_hash, key_prefix, key_last4, name, team_id, created_at, revoked) """
    + _SERIES.replace(":n", ":keys")
    + """
    SELECT 'key_' || printf('%016x', g), printf('%064x', g), 'lg-' || printf('%08x', g * 7919), printf('%04x', g % 65536),
           'bulk-' || g, CASE WHEN g % 10 = 0 THEN 'team-' || (g % 100 / 10) END, """
    + _STAMP.format(secs="g * 60")
    + """, g % 50 = 0
    FROM s
    """,
    """
    INSERT INTO usage_records (request_id, started_at, endpoint, model, key_id, user_id, team, provider, deployment,
        upstream_model, status, error_type, error_message, streamed, partial, usage_estimated, attempts, prompt_tokens,
        completion_tokens, cached_tokens, cache_creation_tokens, reasoning_tokens, cost_usd, cost_unknown, latency_ms) """
    + _SERIES.replace(":n", ":records")
    + "SELECT 'req_' || printf('%024x', g), "
    + _STAMP.format(secs="g * 2592.0 * 1000 / :records")
    + f""",
           'chat', 'model-' || (g % 3), 'key_' || printf('%016x', g % 1000 + 1), 'user-' || (g % 200),
           'team-' || (g % 10), 'openai', 'dep-' || (g % 3) || '-' || (g % 2), 'up-' || (g % 3),
           CASE WHEN g % 50 = 0 THEN 502 ELSE 200 END, CASE WHEN g % 50 = 0 THEN 'provider_bad_gateway' END,
           CASE WHEN g % 50 = 0 THEN 'upstream answered 502' END,
           g % 4 = 0, 0, 0, 1, 100 + g % 900, 20 + g % 300, 0, 0, 0, (g % 1000) * 0.000001, 0, {LATENCY}
    FROM s
    """,
    """
    INSERT INTO usage_daily (day, key_id, team, model, requests, errors, prompt_tokens, completion_tokens, cached_tokens,
        cache_creation_tokens, reasoning_tokens, cost_usd, cost_unknown)
    SELECT date(started_at), coalesce(key_id, ''), coalesce(team, ''), coalesce(model, ''), count(*),
           sum(status >= 400), sum(prompt_tokens), sum(completion_tokens), 0, 0, 0, sum(cost_usd), 0
    FROM usage_records GROUP BY 1, 2, 3, 4
    """,
    """
    INSERT INTO usage_latency_daily (day, key_id, team, model, bucket, count)
    SELECT date(started_at), coalesce(key_id, ''), coalesce(team, ''), coalesce(model, ''),
           CAST(floor(ln(latency_ms) / ln(1.1)) AS INTEGER), count(*)
    FROM usage_records GROUP BY 1, 2, 3, 4, 5
    """,
]

# The heavy queries as the pages send them (bound values inlined), for their plans.
PLANS = {
    "log page": "SELECT request_id FROM usage_records WHERE parent_request_id IS NULL "
    "ORDER BY started_at DESC, request_id DESC LIMIT 51",
    "log page by key": "SELECT request_id FROM usage_records WHERE parent_request_id IS NULL "
    "AND key_id = 'key_0000000000000005' ORDER BY started_at DESC, request_id DESC LIMIT 51",
    "keys page": "SELECT id FROM api_keys ORDER BY created_at DESC, id DESC LIMIT 51",
    "key search": "SELECT id FROM api_keys WHERE id IN (SELECT id FROM api_keys WHERE lower(name){C} >= 'bulk-777' "
    "AND lower(name){C} < 'bulk-778' UNION SELECT id FROM api_keys WHERE lower(key_prefix){C} >= 'bulk-777' "
    "AND lower(key_prefix){C} < 'bulk-778' UNION SELECT id FROM api_keys WHERE user_id = 'bulk-777' "
    "UNION SELECT id FROM api_keys WHERE team_id = 'bulk-777' UNION SELECT id FROM api_keys WHERE id = 'bulk-777') "
    "ORDER BY created_at DESC, id DESC LIMIT 51",
    "overview days": "SELECT day, requests, errors, cost_usd FROM usage_rollup WHERE dim = 'all' AND day >= '{start}'",
    "overview top keys": "SELECT value, sum(cost_usd) AS c FROM usage_rollup WHERE dim = 'key' AND day >= '{start}' "
    "AND value != '' GROUP BY value ORDER BY c DESC, value LIMIT 10",
    "usage by key, sums": "SELECT value, sum(requests), sum(cost_usd) FROM usage_rollup WHERE dim = 'key' "
    "AND day >= '{start}' GROUP BY value ORDER BY value",
    "usage by key, latency": "SELECT value, bucket, sum(count) FROM usage_rollup_latency WHERE dim = 'key' "
    "AND day >= '{start}' GROUP BY value, bucket",
}


async def admin_sql(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def seed(url: str, records: int, keys: int) -> None:
    import sqlalchemy as sa

    from lockgate.store import Store

    store = Store(url)
    try:
        await store.upgrade(BEFORE_ROLLUPS)
        for sql in SEED_PG if store.dialect == "postgresql" else SEED_SQLITE:
            started = time.perf_counter()
            async with store.begin() as conn:
                await conn.execute(sa.text(sql), {"records": records, "keys": keys})
            print(f"  {sql.split()[2]}: {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        await store.upgrade("head")  # 0009 backfills its roll-ups from usage_daily (on a newer checkout)
        print(f"  migrate to head (backfill): {time.perf_counter() - started:.1f} s")
        # Statistics, and on PostgreSQL the visibility map that autovacuum keeps after inserts (without it
        # no index-only scan: the usage page's latency read took ~4x as long on a never-vacuumed table).
        async with store.engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(sa.text("VACUUM ANALYZE" if store.dialect == "postgresql" else "ANALYZE"))
        async with store.connect() as conn:
            for table in ("usage_daily", "usage_latency_daily", "usage_rollup", "usage_rollup_latency"):
                if await conn.run_sync(lambda c, t=table: sa.inspect(c).has_table(t)):
                    n = (await conn.execute(sa.text(f"SELECT count(*) FROM {table}"))).scalar()
                    print(f"  {table}: {n:,} rows")
    finally:
        await store.aclose()


async def plans(url: str) -> None:
    import datetime as dt

    import sqlalchemy as sa

    from lockgate.store import Store

    store = Store(url)
    pg = store.dialect == "postgresql"
    start = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=29)).isoformat()
    try:
        async with store.connect() as conn:
            if not await conn.run_sync(lambda c: sa.inspect(c).has_table("usage_rollup")):
                print("  (no usage_rollup: plans skipped)")
                return
            for name, sql in PLANS.items():
                sql = sql.replace("{C}", ' COLLATE "C"' if pg else "").replace("{start}", start)
                explain = "EXPLAIN (ANALYZE, TIMING OFF) " if pg else "EXPLAIN QUERY PLAN "
                rows = (await conn.execute(sa.text(explain + sql))).all()
                plan = [str(r[0] if pg else r[-1]).strip() for r in rows]
                print(f"  {name}: {' / '.join(plan[:4])}")
    finally:
        await store.aclose()


def time_pages(url: str, runs: int, workdir: Path) -> None:
    from fastapi.testclient import TestClient

    from lockgate.app import create_app
    from lockgate.config import parse_config

    config = parse_config(
        {
            "auth": {"master_key": MASTER},
            "database": {"url": url},
            "usage": {"spool_dir": str(workdir / "spool")},
            "telemetry": {"access_log": False, "metrics": False, "log_level": "warning"},
            "models": [
                {"name": f"model-{i}", "deployments": [{"provider": "mock", "model": "m", "id": f"dep-{i}-0"}]} for i in range(3)
            ],
        }
    )
    with TestClient(create_app(config, configure_logs=False), base_url="http://127.0.0.1") as client:
        assert client.post("/ui/login", data={"password": MASTER}, follow_redirects=False).status_code == 303
        first = client.get("/ui/keys").text
        after = re.search(r'id="next" href="[^"]*after=([^"&]+)', first)
        log_first = client.get("/ui/logs").text
        log_after = re.search(r'id="next" href="[^"]*after=([^"&]+)', log_first)
        request_id = re.search(r'href="/ui/logs/([^"]+)" class="request-link"', log_first)
        assert after and log_after and request_id
        pages = {
            "overview": "/ui/",
            "overview chart data": "/ui/overview.json",
            "keys": "/ui/keys",
            "keys, page 2": f"/ui/keys?after={after.group(1)}",
            "keys, search": "/ui/keys?q=bulk-777",
            "keys, revoked": "/ui/keys?status=revoked",
            "keys, team": "/ui/keys?team=team-3",
            "keys, near budget": "/ui/keys?status=near_budget",
            "request log": "/ui/logs",
            "request log, page 2": f"/ui/logs?after={log_after.group(1)}",
            "request log, key": "/ui/logs?key=key_0000000000000005",
            "request log, errors": "/ui/logs?status=error",
            "request log, model + streamed": "/ui/logs?model=model-1&streamed=yes",
            "request detail": f"/ui/logs/{request_id.group(1)}",
            "usage by key, 30 d": "/ui/usage?group_by=key",
            "usage by day, 30 d": "/ui/usage?group_by=day",
            "usage by team, 30 d": "/ui/usage?group_by=team",
            "usage CSV by model": "/ui/usage.csv?group_by=model",
            "teams": "/ui/teams",
            "team": "/ui/teams/team-3",
            "deployments": "/ui/deployments",
            "audit": "/ui/audit",
        }
        print(f"{'page':<32} {'p50 ms':>8} {'p95 ms':>8}")
        for name, path in pages.items():
            times = []
            for _ in range(runs):
                started = time.perf_counter()
                r = client.get(path)
                times.append((time.perf_counter() - started) * 1000)
                assert r.status_code in (200, 404), (path, r.status_code)  # team-3 has no record: 404 is its answer
            times.sort()
            p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]
            print(f"{name:<32} {statistics.median(times):>8.1f} {p95:>8.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=20, help="requests per page")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.db == "sqlite":
            name = str(Path(tmp) / "console-bench.db")
            url = f"sqlite:///{name}"
        else:
            name = f"lockgate_bench_console_{secrets.token_hex(4)}"
            asyncio.run(admin_sql(f'CREATE DATABASE "{name}"'))
            url = f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"
        try:
            print(f"seeding {args.records:,} records and {args.keys:,} keys into {name}:")
            asyncio.run(seed(url, args.records, args.keys))
            print("plans:")
            asyncio.run(plans(url))
            time_pages(url, args.runs, Path(tmp))
        finally:
            if args.db == "postgresql":
                asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
