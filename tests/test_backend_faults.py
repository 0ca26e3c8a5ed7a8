"""Back-end faults under load: two `lockgate serve` processes sharing a PostgreSQL and a Redis of the
test's own (throwaway server instances, started and stopped here; the machine's shared ones are
never touched), with requests flowing the whole time.

- PostgreSQL stopped for 20 s mid-load: every answered request's usage record arrives exactly once.
- Redis stopped mid-load: requests keep flowing (redis.on_error: allow), limits resume when it
  returns, nothing is counted twice.
- A gateway killed with SIGKILL mid-load (the database down, so its records are in its spool):
  the spool replays on restart with no duplicates; what the kill lost is measured and printed.

Select with `-m backend_faults`. Each test prints its N of N.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import basic_config
from tests.fakes.openai_upstream import FakeOpenAI
from tests.harness import MASTER_KEY, GatewayProcess, free_port, missing
from tests.test_usage_outage import Cluster
from tests.usage_helpers import fetch, usage_config

pytestmark = [pytest.mark.backend_faults, pytest.mark.postgres, pytest.mark.redis]

AUTH = {"authorization": f"Bearer {MASTER_KEY}"}
MSG = [{"role": "user", "content": "hi"}]
PG_OUTAGE_S = 20.0


class RedisServer:
    """A redis-server of the test's own on a fixed port, so it can be stopped and started again."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            missing("redis-server is not installed", "install it to run the back-end fault tests")
        self.binary = str(binary)
        self.dir = directory
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(self.dir)]
        self.proc = subprocess.Popen([self.binary, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    c = Cluster()
    c.start()
    yield c
    c.destroy()


@pytest.fixture
def db(cluster: Cluster) -> str:
    """A fresh database in the throwaway cluster, for one test."""
    name = f"faults_{uuid.uuid4().hex[:8]}"

    async def create() -> None:
        import asyncpg

        conn = await asyncpg.connect(cluster.url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())
    return cluster.url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    r = RedisServer(tmp_path)
    r.start()
    yield r
    r.stop()


@dataclass
class Answer:
    gateway: int
    request_id: str | None
    status: int  # -1: no answer at all (the gateway was gone)
    metered: bool  # x-ratelimit-remaining-requests was on it
    at: float


class Load:
    """Threads sending chat completions round-robin to the gateways until stopped."""

    def __init__(self, gateways: list[GatewayProcess], threads: int = 4, model: str = "gpt-test") -> None:
        self.gateways = gateways
        self.model = model
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def __enter__(self) -> "Load":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def _run(self, n: int) -> None:
        with httpx.Client(timeout=15) as client:
            i = n
            while not self._stop.is_set():
                g = i % len(self.gateways)
                i += 1
                gw = self.gateways[g]
                try:
                    resp = client.post(f"{gw.url}/chat/completions", headers=AUTH, json={"model": self.model, "messages": MSG})
                    answer = Answer(
                        g,
                        resp.headers.get("x-request-id"),
                        resp.status_code,
                        "x-ratelimit-remaining-requests" in resp.headers,
                        time.monotonic(),
                    )
                except httpx.HTTPError:
                    answer = Answer(g, None, -1, False, time.monotonic())
                    time.sleep(0.05)
                with self._lock:
                    self.answers.append(answer)

    def ok_ids(self, gateway: int | None = None) -> list[str]:
        with self._lock:
            return [a.request_id for a in self.answers if a.status == 200 and a.request_id and gateway in (None, a.gateway)]

    def count(self) -> int:
        with self._lock:
            return len(self.answers)


def _rows(url: str) -> list[dict[str, Any]]:
    try:
        return fetch(url, "SELECT request_id, status FROM usage_records")
    except Exception:  # not reachable yet, or the tables are not made yet
        return []


def _wait_rows(url: str, n: int, timeout_s: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    rows = _rows(url)
    while len(rows) < n and time.monotonic() < deadline:
        time.sleep(0.25)
        rows = _rows(url)
    return rows


def _assert_exactly_once(url: str, answered: list[str], rows: list[dict[str, Any]], others: int = 0) -> None:
    ids = [r["request_id"] for r in rows]
    assert len(ids) == len(set(ids)), "a record was stored twice"
    assert sorted(ids) == sorted(answered), (len(ids), len(answered), sorted(set(answered) ^ set(ids))[:5])
    # The roll-ups count each record once too (a replayed batch adds nothing).
    assert fetch(url, "SELECT SUM(requests) AS n FROM usage_daily")[0]["n"] == len(answered) + others


def _config(fake: FakeOpenAI, db: str, **extra: Any) -> dict[str, Any]:
    cfg = usage_config(basic_config(fake), db, flush_interval_s=0.1, batch_size=20, write_timeout_s=1, **extra)
    cfg["router"] = {"max_attempts": 1}
    return cfg


def test_postgres_stopped_20s_mid_load_every_record_arrives_once(
    fake_openai: FakeOpenAI, cluster: Cluster, db: str, tmp_path: Path
) -> None:
    cfg = _config(fake_openai, db)
    gws = [GatewayProcess(cfg, tmp_path).start(), GatewayProcess(cfg, tmp_path).start()]
    try:
        with Load(gws) as load:
            time.sleep(3)
            cluster.stop()  # the database goes away under load ...
            stopped = load.count()
            time.sleep(PG_OUTAGE_S)
            during = load.count() - stopped
            cluster.start()  # ... and comes back
            time.sleep(3)
        answered = load.ok_ids()
        assert all(a.status == 200 for a in load.answers), {a.status for a in load.answers}
        assert during > 20, "the load kept flowing while the database was down"
        rows = _wait_rows(db, len(answered), timeout_s=45)
        print(f"\npostgres outage ({PG_OUTAGE_S:g} s, {during} requests during it): {len(rows)} of {len(answered)} records")
        _assert_exactly_once(db, answered, rows)
        assert all("usage_db_write_failed" in gw.logs() for gw in gws)
    finally:
        for gw in gws:
            gw.stop()


def test_redis_stopped_mid_load_requests_flow_and_limits_resume(
    fake_openai: FakeOpenAI, db: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    cfg = _config(fake_openai, db)
    cfg["ratelimit"] = {"backend": "redis"}
    cfg["redis"] = {
        "url": redis_server.url,
        "on_error": "allow",
        "timeout_s": 0.2,
        "connect_timeout_s": 0.2,
        "key_prefix": f"lgfaults:{uuid.uuid4().hex[:8]}:",
    }
    cfg["models"][0]["limits"] = {"rpm": 1_000_000}  # metered, never reached
    cfg["models"].append({**cfg["models"][0], "name": "tight", "limits": {"rpm": 5}})
    gws = [GatewayProcess(cfg, tmp_path).start(), GatewayProcess(cfg, tmp_path).start()]
    try:
        with Load(gws) as load:
            time.sleep(2)
            redis_server.stop()  # Redis goes away under load ...
            down_at = time.monotonic()
            time.sleep(5)
            restart_at = time.monotonic()  # answers from here on may be metered: start() returns once Redis accepts
            redis_server.start()  # ... and comes back (empty: its counters are gone)
            up_at = time.monotonic()
            time.sleep(5)
        answers = load.answers
        # on_error allow: nothing refused, nothing failed, whatever Redis did.
        assert answers and all(a.status == 200 for a in answers), sorted({a.status for a in answers})
        before = [a for a in answers if a.at < down_at]
        during = [a for a in answers if down_at + 1 < a.at < restart_at]
        after = [a for a in answers if a.at > up_at + 3]
        assert before and all(a.metered for a in before)
        assert during and not any(a.metered for a in during), "unmetered while Redis was down"
        assert after and all(a.metered for a in after), "metered again once Redis returned"
        # Limits hold again, shared by both gateways, each request counted once: exactly 5 of 8 pass.
        statuses = []
        for i in range(8):
            resp = httpx.post(f"{gws[i % 2].url}/chat/completions", headers=AUTH, json={"model": "tight", "messages": MSG})
            statuses.append(resp.status_code)
        assert sorted(statuses) == [200] * 5 + [429] * 3, statuses
        answered = load.ok_ids()
        rows = _wait_rows(db, len(answered) + 8, timeout_s=20)
        load_rows = [r for r in rows if r["request_id"] in set(answered)]
        print(
            f"\nredis outage: {len(answers)} requests ({len(during)} while it was down), all answered 200;"
            f" {len(load_rows)} of {len(answered)} records; tight limit after: {statuses.count(200)} of 8 admitted"
        )
        assert len(rows) == len(answered) + 8
        _assert_exactly_once(db, answered, load_rows, others=8)
    finally:
        for gw in gws:
            gw.stop()


def test_sigkill_mid_load_the_spool_replays_on_restart_with_no_duplicates(
    fake_openai: FakeOpenAI, cluster: Cluster, db: str, tmp_path: Path
) -> None:
    cfg = _config(fake_openai, db)
    victim, survivor = GatewayProcess(cfg, tmp_path).start(), GatewayProcess(cfg, tmp_path).start()
    restarted: GatewayProcess | None = None
    try:
        cluster.stop()  # records can go nowhere but the spool ...
        with Load([victim, survivor]) as load:
            time.sleep(4)
            assert victim.proc is not None
            victim.proc.send_signal(signal.SIGKILL)  # ... and one gateway dies mid-load
            victim.proc.wait(5)
            time.sleep(1)
        spooled = sorted(Path(tmp_path, "lockgate-spool").glob("*.spool"))
        assert spooled, "the killed gateway left its spool"
        cluster.start()
        restarted = GatewayProcess(cfg, tmp_path)
        restarted.port = victim.port
        restarted.start()
        answered_victim, answered_survivor = load.ok_ids(0), load.ok_ids(1)
        answered = answered_victim + answered_survivor
        # The killed gateway's last records may be gone: wait until the count stops growing.
        rows = _wait_rows(db, len(answered) - cfg["usage"]["batch_size"], timeout_s=30)
        while True:
            time.sleep(1.5)  # a replay still under way (or a duplicate) would show now
            again = _rows(db)
            if len(again) == len(rows):
                break
            rows = again
        ids = [r["request_id"] for r in rows]
        assert len(ids) == len(set(ids)), "a record was stored twice"
        stored = set(ids)
        lost = [i for i in answered_victim if i not in stored]
        # Every survivor's record is there; every stored record is of a request that was made.
        assert set(answered_survivor) <= stored
        extra = stored - set(answered)
        print(
            f"\nSIGKILL mid-load with the database down: {len(stored & set(answered))} of {len(answered)} answered"
            f" requests stored ({len(answered_victim)} by the killed gateway, {len(lost)} of them lost with its memory);"
            f" {len(extra)} more records of requests whose answers the kill cut off"
        )
        # The documented bound: what a hard kill loses is what was still in memory, at most
        # one flush interval's records (the writer spools every tick while the database is down).
        assert len(lost) <= cfg["usage"]["batch_size"], lost
        assert "usage_spool_adopted" in restarted.logs() or "spool_adopted" in restarted.logs()
        assert fetch(db, "SELECT SUM(requests) AS n FROM usage_daily")[0]["n"] == len(
            [r for r in rows if r["request_id"] in stored]
        )
    finally:
        for gw in (victim, survivor, restarted):
            if gw is not None:
                gw.stop()
