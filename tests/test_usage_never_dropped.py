"""Usage is never dropped: a stalled PostHog and a write-locked database under load, from the outside.

A real `lockgate serve` with tiny queues (50 slots per best-effort sink, 200
usage records in memory) takes a few thousand requests while PostHog never
answers and the database refuses writes: SQLite held by another connection in
``BEGIN EXCLUSIVE``, PostgreSQL by ``LOCK TABLE usage_records IN ACCESS
EXCLUSIVE MODE``. Once the lock goes, every request id has its usage row, while
the best-effort sinks' drops show in /metrics. A second test stops the gateway
while the database is still locked: what it held goes to the spool, and the next
gateway replays it.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.dbs import db_url  # noqa: F401  (the fixture: each test runs on SQLite and PostgreSQL)
from tests.fakes.posthog_capture import CaptureServer
from tests.harness import MASTER_KEY, GatewayProcess
from tests.telemetry_support import scrape, value
from tests.usage_helpers import fetch, wait_for_records

LOCK_AT_LEAST_S = 8.0


class WriteLock:
    """Another connection holding the database's write lock until release()."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._held = threading.Event()
        self._release = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def __enter__(self) -> "WriteLock":
        self._thread.start()
        assert self._held.wait(10), f"could not lock the database: {self.error!r}"
        self.since = time.monotonic()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def release(self) -> None:
        self._release.set()
        self._thread.join(10)

    def _run(self) -> None:
        try:
            if self.url.startswith("sqlite:///"):
                conn = sqlite3.connect(self.url.removeprefix("sqlite:///"), isolation_level=None)
                conn.execute("BEGIN EXCLUSIVE")
                self._held.set()
                self._release.wait(120)
                conn.execute("ROLLBACK")
                conn.close()
            else:
                asyncio.run(self._pg())
        except BaseException as err:  # surfaced by __enter__
            self.error = err
            raise

    async def _pg(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.url)
        try:
            tx = conn.transaction()
            await tx.start()
            await conn.execute("LOCK TABLE usage_records IN ACCESS EXCLUSIVE MODE")
            self._held.set()
            await asyncio.to_thread(self._release.wait, 120)
            await tx.rollback()
        finally:
            await conn.close()


@pytest.fixture
def stalled_posthog() -> Iterator[CaptureServer]:
    server = CaptureServer(mode="hang").start()
    yield server
    server.stop()


def _config(url: str, posthog: CaptureServer) -> dict[str, Any]:
    return {
        "auth": {"master_key": MASTER_KEY},
        "server": {"sink_queue_size": 50},
        "models": [{"name": "mock-gpt", "deployments": [{"provider": "mock", "model": "mock-gpt"}]}],
        "database": {"url": url},
        "usage": {"batch_size": 50, "flush_interval_s": 0.1, "write_timeout_s": 1, "max_buffered": 200},
        "posthog": {
            "api_key": "phc_test_never_dropped",
            "host": posthog.url,
            "flush_at": 10,
            "flush_interval_s": 0.1,
            "max_queue_size": 20,
            "max_retries": 0,
            "timeout_s": 30,
            "shutdown_timeout_s": 1,
        },
    }


def _load(gw: GatewayProcess, n: int, concurrency: int = 32) -> list[str]:
    """n chat completions from `concurrency` official async clients; every request id answered 200."""

    async def run() -> list[str]:
        client = openai.AsyncOpenAI(base_url=gw.url, api_key=MASTER_KEY, max_retries=0, timeout=30)
        ids: list[str] = []
        todo = iter(range(n))

        async def worker() -> None:
            for _ in todo:
                raw = await client.chat.completions.with_raw_response.create(
                    model="mock-gpt", messages=[{"role": "user", "content": "hi"}], max_tokens=5
                )
                assert raw.http_response.status_code == 200
                ids.append(raw.headers["x-request-id"])

        try:
            await asyncio.gather(*(worker() for _ in range(concurrency)))
        finally:
            await client.close()
        return ids

    return asyncio.run(run())


def _hold_until(lock: WriteLock, seconds: float) -> None:
    time.sleep(max(0.0, lock.since + seconds - time.monotonic()))


def _usage_ids(url: str) -> list[str]:
    return sorted(r["request_id"] for r in fetch(url, "SELECT request_id FROM usage_records"))


def _settled_metrics(gw: GatewayProcess, n: int, timeout_s: float = 15.0) -> dict:
    """Until the best-effort sinks have accounted for every request (delivered or counted as dropped)."""
    deadline = time.monotonic() + timeout_s
    while True:
        samples = scrape(gw.base_url)
        seen = value(samples, "lockgate_requests_total") + value(samples, "lockgate_sink_dropped_total", sink="metrics")
        if seen >= n or time.monotonic() > deadline:
            return samples
        time.sleep(0.2)


def test_every_usage_record_survives_a_stalled_posthog_and_a_locked_database(
    db_url: str,
    start_gateway: Callable[..., GatewayProcess],
    stalled_posthog: CaptureServer,
) -> None:
    gw = start_gateway(_config(db_url, stalled_posthog))
    n = 3000
    with WriteLock(db_url) as lock:
        ids = _load(gw, n)
        _hold_until(lock, LOCK_AT_LEAST_S)
        time.sleep(1.1)  # one more sample of the components' counters
        during_lock = scrape(gw.base_url)
        if db_url.startswith("sqlite"):  # (PostgreSQL's lock blocks readers too)
            assert _usage_ids(db_url) == []  # nothing got past the lock
    assert len(ids) == n and len(set(ids)) == n

    rows = wait_for_records(db_url, n, timeout_s=60)
    assert len(rows) == n and sorted(r["request_id"] for r in rows) == sorted(ids)
    assert fetch(db_url, "SELECT SUM(requests) AS n FROM usage_daily")[0]["n"] == n

    # Memory was full while the database was locked: the overflow went to the spool, not away.
    assert value(during_lock, "lockgate_usage_spooled_records_total") > 0
    assert value(during_lock, "lockgate_usage_write_failures_total") > 0
    samples = _settled_metrics(gw, n)
    assert value(samples, "lockgate_sink_dropped_total", sink="posthog") > 0
    assert value(samples, "lockgate_sink_dropped_total", sink="usage") == 0  # no such lane: never dropped
    # Every record reached each other best-effort sink or was counted as dropped there.
    metrics_seen = value(samples, "lockgate_requests_total") + value(samples, "lockgate_sink_dropped_total", sink="metrics")
    assert metrics_seen == n
    logged = {line["request_id"] for line in gw.access_lines()}
    assert len(logged) + value(samples, "lockgate_sink_dropped_total", sink="access_log") == n
    gw.stop()
    assert not list(Path(gw.workdir, "lockgate-spool").glob("*.spool"))  # replayed and removed


def test_a_stop_while_the_database_is_locked_spools_everything_for_the_next_start(
    db_url: str,
    start_gateway: Callable[..., GatewayProcess],
    stalled_posthog: CaptureServer,
) -> None:
    config = _config(db_url, stalled_posthog)
    gw = start_gateway(config)
    n = 1000
    with WriteLock(db_url):
        ids = _load(gw, n)
        gw.stop()  # SIGTERM with the database still locked
    assert '"event":"stopped"' in gw.logs() and "usage_records_lost" not in gw.logs()
    spooled = sum(p.read_bytes().count(b'"request_id"') for p in Path(gw.workdir, "lockgate-spool").glob("*.spool"))
    assert spooled + len(_usage_ids(db_url)) >= n

    start_gateway(config)  # adopts the spool and replays it before it serves
    rows = wait_for_records(db_url, n, timeout_s=30)
    assert len(rows) == n and sorted(r["request_id"] for r in rows) == sorted(ids)
