"""Migrations that cannot race: `lockgate migrate` under the PostgreSQL advisory lock, replicas that
start together on an empty database, readiness 503 until the schema is at head, a newer schema refused."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.dbs import create_pg_database, drop_pg_database
from tests.harness import ROOT, GatewayProcess, require_service

pytestmark = pytest.mark.postgres

MOCK_CONFIG = {
    "auth": {"master_key": "sk-test-master-0123456789"},
    "models": [{"name": "m", "deployments": [{"provider": "mock", "model": "m"}]}],
    "telemetry": {"log_format": "json"},
}


@pytest.fixture
def pg_url():
    require_service("PostgreSQL", "127.0.0.1", 5432)
    url = create_pg_database()
    yield url
    drop_pg_database(url)


def _config(tmp_path: Path, url: str) -> Path:
    import yaml

    path = tmp_path / "lockgate.yaml"
    path.write_text(yaml.safe_dump({**MOCK_CONFIG, "database": {"url": url}}))
    return path


async def _query(url: str, sql: str) -> list:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return [tuple(r) for r in await conn.fetch(sql)]
    finally:
        await conn.close()


def _migrate(config: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lockgate", "migrate", "--config", str(config)],
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _head() -> str:
    from lockgate.store.db import _script_heads

    return ",".join(sorted(_script_heads()))


def test_four_concurrent_migrates_make_one_schema(tmp_path, pg_url):
    config = _config(tmp_path, pg_url)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: _migrate(config), range(4)))
    for r in results:
        assert r.returncode == 0, r.stderr
        assert "Traceback" not in r.stderr and "rror" not in r.stderr, r.stderr
        assert f"at revision {_head()}" in r.stdout
    assert asyncio.run(_query(pg_url, "SELECT version_num FROM alembic_version")) == [(_head(),)]


def test_migrate_waits_for_the_advisory_lock(tmp_path, pg_url):
    """While another session holds the lock, `lockgate migrate` waits instead of migrating beside it."""
    import asyncpg

    from lockgate.store.db import _PG_MIGRATION_LOCK

    async def scenario() -> tuple[float, int]:
        holder = await asyncpg.connect(pg_url)
        await holder.execute("SELECT pg_advisory_lock($1)", _PG_MIGRATION_LOCK)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "lockgate",
            "migrate",
            "--config",
            str(_config(tmp_path, pg_url)),
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        await asyncio.sleep(4)
        assert proc.returncode is None, "migrate did not wait for the lock"
        tables = await holder.fetch("SELECT 1 FROM pg_tables WHERE tablename = 'alembic_version'")
        assert not tables, "migrate ran while another session held the migration lock"
        released = time.monotonic()
        await holder.execute("SELECT pg_advisory_unlock($1)", _PG_MIGRATION_LOCK)
        await holder.close()
        rc = await asyncio.wait_for(proc.wait(), 60)
        return time.monotonic() - released, rc

    _, rc = asyncio.run(scenario())
    assert rc == 0


def test_four_replicas_start_together_on_an_empty_database(tmp_path, pg_url):
    gateways = [GatewayProcess({**MOCK_CONFIG, "database": {"url": pg_url}}, tmp_path) for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda g: g.start(timeout_s=90), gateways))
    try:
        for g in gateways:
            assert httpx.get(f"{g.base_url}/health/ready", timeout=5).status_code == 200
    finally:
        for g in gateways:
            g.stop()
    for g in gateways:
        logs = g.logs()
        assert "Traceback" not in logs and '"level":"error"' not in logs, logs
    assert asyncio.run(_query(pg_url, "SELECT version_num FROM alembic_version")) == [(_head(),)]


def test_readiness_waits_for_the_migrate_step(tmp_path, pg_url):
    """With LOCKGATE_MIGRATE_ON_START=false a replica serves /health/ready 503 until `lockgate migrate` ran."""
    gw = GatewayProcess({**MOCK_CONFIG, "database": {"url": pg_url}}, tmp_path, env={"LOCKGATE_MIGRATE_ON_START": "false"})
    gw.config_path.write_text(__import__("yaml").safe_dump(gw.config))
    log = open(gw.log_path, "ab")
    gw.proc = subprocess.Popen(
        [sys.executable, "-m", "lockgate", "serve", "--config", str(gw.config_path), "--port", str(gw.port)],
        cwd=tmp_path,
        env=gw.env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(f"{gw.base_url}/health/live", timeout=1)
                if r.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, gw.logs()
            time.sleep(0.1)
        r = httpx.get(f"{gw.base_url}/health/ready", timeout=5)
        assert r.status_code == 503
        assert r.json()["checks"]["database"]["schema"] == "behind"
        assert _migrate(gw.config_path).returncode == 0
        r = httpx.get(f"{gw.base_url}/health/ready", timeout=5)
        assert r.status_code == 200, r.text
    finally:
        gw.stop()


def test_a_newer_schema_refuses_the_start(tmp_path, pg_url):
    config = _config(tmp_path, pg_url)
    assert _migrate(config).returncode == 0
    asyncio.run(_query(pg_url, "UPDATE alembic_version SET version_num = 'ffffffffffff' RETURNING 1"))
    r = _migrate(config)
    assert r.returncode == 1
    assert "newer version" in r.stderr and "Traceback" not in r.stderr
    gw = GatewayProcess({**MOCK_CONFIG, "database": {"url": pg_url}}, tmp_path, env={"LOCKGATE_MIGRATE_ON_START": "false"})
    with pytest.raises(RuntimeError, match="newer version"):
        gw.start(timeout_s=30)
