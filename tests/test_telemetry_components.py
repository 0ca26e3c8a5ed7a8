"""Components' own counts on /metrics: the usage writer, the rate limiter, the budget counters.

They are copied into Prometheus by the state sampler once a second, so each test polls a
scrape (a few seconds at most) until the values it caused show.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import openai

from tests.fakes.openai_upstream import FakeOpenAI
from tests.harness import MASTER_KEY, free_port
from tests.telemetry_support import chat_body, scrape, telemetry_config, value


def _until(base_url: str, ok: Callable[[dict], bool], timeout_s: float = 6.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        samples = scrape(base_url)
        if ok(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.1)


def _send(url: str, n: int) -> None:
    client = openai.OpenAI(base_url=url, api_key=MASTER_KEY, max_retries=0)
    for _ in range(n):
        client.chat.completions.create(**chat_body())


def test_usage_writer_counts(start_gateway, fake_openai: FakeOpenAI, tmp_path) -> None:
    cfg: dict[str, Any] = telemetry_config(fake_openai, usage={"flush_interval_s": 0.1, "spool_dir": str(tmp_path / "spool")})
    gw = start_gateway(cfg)
    _send(gw.url, 3)
    samples = _until(gw.base_url, lambda s: value(s, "lockgate_usage_written_records_total") >= 3)
    assert value(samples, "lockgate_usage_written_records_total") == 3
    assert value(samples, "lockgate_usage_spooled_records_total") == 0
    assert value(samples, "lockgate_usage_write_failures_total") == 0
    assert value(samples, "lockgate_usage_spool_pending") == 0
    assert value(samples, "lockgate_usage_buffered_records") == 0


def test_usage_writes_that_time_out_are_spooled_and_counted(start_gateway, fake_openai: FakeOpenAI, tmp_path) -> None:
    # A write can never finish in a microsecond (it goes through a thread): every batch is spooled.
    usage = {"flush_interval_s": 0.1, "write_timeout_s": 0.000001, "spool_dir": str(tmp_path / "spool")}
    gw = start_gateway(telemetry_config(fake_openai, usage=usage))
    _send(gw.url, 4)
    samples = _until(
        gw.base_url,
        lambda s: value(s, "lockgate_usage_spooled_records_total") >= 4 and value(s, "lockgate_usage_spool_pending") == 1,
    )
    assert value(samples, "lockgate_usage_spooled_records_total") >= 4
    assert value(samples, "lockgate_usage_write_failures_total") >= 1
    assert value(samples, "lockgate_usage_spool_pending") == 1


def test_rate_limiter_backend_down_fails_open_and_is_counted(start_gateway, fake_openai: FakeOpenAI) -> None:
    """Redis where nothing listens, redis.on_error: allow: every request served, unmetered, and counted."""
    cfg = telemetry_config(
        fake_openai,
        ratelimit={"backend": "redis", "defaults": {"rpm": 1000, "tpm": 1_000_000}},
        budgets={"backend": "redis"},
        redis={"url": f"redis://127.0.0.1:{free_port()}/0", "timeout_s": 0.1, "connect_timeout_s": 0.1, "on_error": "allow"},
    )
    gw = start_gateway(cfg)
    _send(gw.url, 5)  # all answered: fail open
    samples = _until(
        gw.base_url,
        lambda s: (
            value(s, "lockgate_ratelimit_fail_open_total") >= 5 and value(s, "lockgate_budget_dropped_increments_total") > 0
        ),
    )
    assert value(samples, "lockgate_ratelimit_fail_open_total") == 5
    assert value(samples, "lockgate_ratelimit_backend_errors_total") >= 1  # then the breaker skips Redis a moment
    assert value(samples, "lockgate_budget_dropped_increments_total") > 0  # spend could not reach Redis either
    assert value(samples, "lockgate_requests_total", status="200") == 5


def test_rate_limiter_healthy_counts_nothing(start_gateway, fake_openai: FakeOpenAI) -> None:
    cfg = telemetry_config(fake_openai, ratelimit={"defaults": {"rpm": 1000, "tpm": 1_000_000}})
    gw = start_gateway(cfg)
    _send(gw.url, 2)
    samples = _until(gw.base_url, lambda s: value(s, "lockgate_usage_written_records_total") >= 2)
    for name in (
        "lockgate_ratelimit_fail_open_total",
        "lockgate_ratelimit_backend_errors_total",
        "lockgate_ratelimit_dropped_corrections_total",
        "lockgate_budget_dropped_increments_total",
    ):
        assert value(samples, name) == 0, name
    # The series exist from the start (alerts can use them before the first failure).
    assert ("lockgate_ratelimit_fail_open_total", ()) in samples
