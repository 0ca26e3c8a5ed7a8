"""usage.http_sink from the outside: a real `lockgate serve`, the openai client, a real receiver that fails.

The receiver refuses, then hangs past the sender's timeout (its answer is lost, so
that batch is sent again), then recovers: every record arrives, each stored once,
equal to the gateway's own usage_records row. A receiver that is down at shutdown
costs nothing either: the batches wait in the spool and reach it after a restart.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from lockgate.config import ConfigError, parse_config
from lockgate.usage.http_sink import idempotency_key, wire_row
from tests.harness import MASTER_KEY, GatewayProcess
from tests.telemetry_support import scrape, value
from tests.usage_receiver import UsageReceiver

MSG = [{"role": "user", "content": "count me"}]


@pytest.fixture
def receiver() -> Iterator[UsageReceiver]:
    r = UsageReceiver().start()
    yield r
    r.stop()


def config(db: Path, receiver: UsageReceiver, **sink: Any) -> dict[str, Any]:
    return {
        "auth": {"master_key": MASTER_KEY},
        "database": {"url": f"sqlite:///{db}"},
        "models": [{"name": "mock-gpt", "deployments": [{"provider": "mock", "model": "mock-gpt"}]}],
        "usage": {
            "flush_interval_s": 0.1,
            "http_sink": {
                "url": receiver.url,
                "headers": {"Authorization": f"Bearer {receiver.token}"},
                "batch_size": 5,
                "flush_interval_s": 0.1,
                "timeout_s": 0.5,
                "retry_max_s": 0.4,
                **sink,
            },
        },
    }


def own_rows(db: Path) -> dict[str, dict[str, Any]]:
    """The gateway's usage_records, as SQLite keeps them (booleans 0/1, started_at as text)."""
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return {r["request_id"]: dict(r) for r in conn.execute("SELECT * FROM usage_records")}


def as_stored(row: dict[str, Any]) -> dict[str, Any]:
    return {k: int(v) if isinstance(v, bool) else v for k, v in row.items()}


def wait_until(check: Any, timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return bool(check())


def send(gw: GatewayProcess, n: int) -> list[str]:
    client = openai.OpenAI(base_url=gw.url, api_key=MASTER_KEY, max_retries=0, timeout=20)
    ids = []
    for i in range(n):
        raw = client.chat.completions.with_raw_response.create(model="mock-gpt", messages=MSG, stream=i % 2 == 1)
        if i % 2 == 1:
            for _ in raw.parse():
                pass
        ids.append(raw.headers["x-request-id"])
    return ids


def test_a_failing_receiver_gets_every_record_exactly_once(tmp_path: Path, receiver: UsageReceiver) -> None:
    receiver.faults += [{"status": 503}, {"status": 500}, {"hang_s": 1.5}]
    db = tmp_path / "lg.db"
    gw = GatewayProcess(config(db, receiver), tmp_path).start()
    try:
        ids = send(gw, 20)
        assert wait_until(lambda: set(receiver.rows) == set(ids)), gw.logs()[-3000:]
        assert wait_until(lambda: len(own_rows(db)) == 20)
        # Counted as well as logged: the sampler copies the sink's totals once a second.
        assert wait_until(
            lambda: (
                value(scrape(gw.base_url), "lockgate_usage_http_sent_records_total") >= 20
                and value(scrape(gw.base_url), "lockgate_usage_http_failures_total") >= 2
            )
        )
    finally:
        assert gw.stop() == 0
    statuses = [p["status"] for p in receiver.posts]
    assert statuses[:2] == [503, 500]  # the faults were served: these batches were refused, then retried
    assert len(receiver.rows) == 20 and set(receiver.rows) == set(ids)
    # The hung batch was stored late and sent again: delivered twice, stored once (by request id).
    # Its late store lands hang_s after it began, which may be after the retry finished everything else.
    assert wait_until(lambda: max(receiver.deliveries.values()) >= 2, timeout_s=5.0), receiver.deliveries
    keys = [p["idempotency_key"] for p in receiver.posts]
    assert len(keys) > len(set(keys))  # a retried batch carries the same Idempotency-Key
    mine = own_rows(db)
    for rid, row in receiver.rows.items():
        assert as_stored(row) == mine[rid]


def test_spooled_batches_reach_the_receiver_after_a_restart(tmp_path: Path, receiver: UsageReceiver) -> None:
    db = tmp_path / "lg.db"
    receiver.down = True
    gw = GatewayProcess(config(db, receiver), tmp_path).start()
    ids = send(gw, 7)
    assert wait_until(lambda: len(receiver.posts) >= 2)
    assert gw.stop() == 0  # SIGTERM while the receiver is down: the batches go to the spool
    spooled = [p for p in (tmp_path / "lockgate-spool" / "http").glob("usage-*.spool") if p.stat().st_size > 0]
    assert spooled, "nothing was spooled"
    assert receiver.rows == {}
    receiver.down = False
    gw2 = GatewayProcess(config(db, receiver), tmp_path).start()
    try:
        assert wait_until(lambda: set(receiver.rows) == set(ids)), gw2.logs()[-3000:]
    finally:
        gw2.stop()
    mine = own_rows(db)
    assert all(as_stored(receiver.rows[rid]) == mine[rid] for rid in ids)


def test_wire_format_and_config() -> None:
    row = {"request_id": "b", "started_at": 1764637323.000004, "streamed": True}
    assert wire_row(row)["started_at"] == "2025-12-02 01:02:03.000004"
    assert idempotency_key([{"request_id": "a"}, {"request_id": "b"}]) == idempotency_key(
        [{"request_id": "b"}, {"request_id": "a"}]
    )
    assert idempotency_key([{"request_id": "a"}]) != idempotency_key([{"request_id": "b"}])
    base = {"models": [{"name": "m", "deployments": [{"provider": "mock", "model": "m"}]}]}
    with pytest.raises(ConfigError, match="usage.http_sink.url"):
        parse_config({**base, "usage": {"http_sink": {"url": "ftp://x"}}})
    with pytest.raises(ConfigError, match="usage.http_sink.batch_sizes: unknown field"):
        parse_config({**base, "usage": {"http_sink": {"url": "http://x", "batch_sizes": 3}}})
