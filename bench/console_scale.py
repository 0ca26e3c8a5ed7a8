"""The console at scale: seed PostgreSQL with request records and keys, time every page, show the plans.

    .venv/bin/python bench/console_scale.py                       # 1,000,000 records, 100,000 keys
    .venv/bin/python bench/console_scale.py --records 100000 --keys 10000 --runs 10

Makes a throwaway database on the PostgreSQL of LOCKGATE_TEST_PG (default postgres@127.0.0.1:5432),
migrates it, seeds it with SQL (generate_series: 30 days of records over 1,000 active keys, 3 models,
10 teams, 2 % errors, and the daily roll-ups the reports read), then times each console page in
process (ASGI, as the server runs it: its time, not the network's) and prints p50/p95 per page and
the plan of the list queries. The database is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PG_ADMIN = os.environ.get("LOCKGATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
MASTER = "sk-bench-console-master"

SEED = [
    # Keys: `keys` of them, created over the last year; every 10th in a team, every 50th revoked.
    """
    INSERT INTO api_keys (id, key_hash, key_prefix, key_last4, name, team_id, created_at, revoked)
    SELECT 'key_' || lpad(to_hex(g), 16, '0'), md5(g::text) || md5((g + 1)::text), 'lg-' || substr(md5(g::text), 1, 8),
           substr(md5(g::text), 28, 4), 'bulk-' || g, CASE WHEN g % 10 = 0 THEN 'team-' || (g % 100 / 10) END,
           now() - (g || ' minutes')::interval, g % 50 = 0
    FROM generate_series(1, :keys) AS g
    """,
    # Records: `records` requests over 30 days, by the first 1,000 keys.
    """
    INSERT INTO usage_records (request_id, started_at, endpoint, model, key_id, user_id, team, provider, deployment,
        upstream_model, status, error_type, error_message, streamed, partial, usage_estimated, attempts, prompt_tokens,
        completion_tokens, cached_tokens, cache_creation_tokens, reasoning_tokens, cost_usd, cost_unknown, latency_ms)
    SELECT 'req_' || lpad(to_hex(g), 24, '0'),
           (now() AT TIME ZONE 'UTC') - ((g::float / :records) * interval '30 days'),
           'chat', 'model-' || (g % 3), 'key_' || lpad(to_hex(g % 1000 + 1), 16, '0'), 'user-' || (g % 200),
           'team-' || (g % 10), 'openai', 'dep-' || (g % 3) || '-' || (g % 2), 'up-' || (g % 3),
           CASE WHEN g % 50 = 0 THEN 502 ELSE 200 END, CASE WHEN g % 50 = 0 THEN 'provider_bad_gateway' END,
           CASE WHEN g % 50 = 0 THEN 'upstream answered 502' END,
           g % 4 = 0, false, false, 1, 100 + g % 900, 20 + g % 300, 0, 0, 0, (g % 1000) * 0.000001, false, 50 + (g % 2000)
    FROM generate_series(1, :records) AS g
    """,
    # The daily roll-ups, as the usage writer keeps them.
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
    "ANALYZE",
]


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

    store = await Store(url).open()
    try:
        for sql in SEED:
            started = time.perf_counter()
            async with store.begin() as conn:
                await conn.execute(sa.text(sql), {"records": records, "keys": keys} if ":" in sql else {})
            print(
                f"  {sql.split()[2] if sql.strip().startswith('INSERT') else sql.strip()}: {time.perf_counter() - started:.1f} s"
            )
    finally:
        await store.aclose()


async def plans(url: str) -> None:
    import sqlalchemy as sa

    from lockgate.store import Store

    queries = {
        "log page": "SELECT request_id FROM usage_records WHERE parent_request_id IS NULL ORDER BY started_at DESC, request_id DESC LIMIT 51",
        "log page by key": "SELECT request_id FROM usage_records WHERE parent_request_id IS NULL AND key_id = 'key_0000000000000005' ORDER BY started_at DESC, request_id DESC LIMIT 51",
        "keys page": "SELECT id FROM api_keys ORDER BY created_at DESC, id DESC LIMIT 51",
    }
    store = Store(url)
    try:
        async with store.connect() as conn:
            for name, sql in queries.items():
                plan = [r[0] for r in (await conn.execute(sa.text("EXPLAIN " + sql))).all()]
                print(f"  {name}: {' / '.join(p.strip() for p in plan[:3])}")
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
            "request log": "/ui/logs",
            "request log, page 2": f"/ui/logs?after={log_after.group(1)}",
            "request log, key": "/ui/logs?key=key_0000000000000005",
            "request log, errors": "/ui/logs?status=error",
            "request log, model + streamed": "/ui/logs?model=model-1&streamed=yes",
            "request detail": f"/ui/logs/{request_id.group(1)}",
            "usage by key, 30 d": "/ui/usage?group_by=key",
            "usage by day, 30 d": "/ui/usage?group_by=day",
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
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=20, help="requests per page")
    args = parser.parse_args()
    name = f"lockgate_bench_console_{secrets.token_hex(4)}"
    asyncio.run(admin_sql(f'CREATE DATABASE "{name}"'))
    url = f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"
    import tempfile

    try:
        print(f"seeding {args.records:,} records and {args.keys:,} keys into {name}:")
        asyncio.run(seed(url, args.records, args.keys))
        print("plans:")
        asyncio.run(plans(url))
        with tempfile.TemporaryDirectory() as tmp:
            time_pages(url, args.runs, Path(tmp))
    finally:
        asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
