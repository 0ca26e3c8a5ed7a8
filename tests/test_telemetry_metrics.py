"""GET /metrics after a known sequence of requests, with one worker and with two."""

from __future__ import annotations

import threading
import time

import httpx
import openai

from tests.fakes.openai_upstream import FakeOpenAI
from tests.harness import MASTER_KEY
from tests.telemetry_support import chat_body, scrape, telemetry_config, value


def _sequence(url: str, fake: FakeOpenAI) -> None:
    """2 answers, 1 stream, 1 failover (500 then success), 1 bad key, 1 unknown model."""
    client = openai.OpenAI(base_url=url, api_key=MASTER_KEY, max_retries=0)
    client.chat.completions.create(**chat_body())
    client.chat.completions.create(**chat_body())
    list(client.chat.completions.create(**chat_body(), stream=True, stream_options={"include_usage": True}))
    fake.faults.append({"status": 500})
    client.chat.completions.create(**chat_body("gpt-failover"))
    assert (
        httpx.post(f"{url}/chat/completions", json=chat_body(), headers={"authorization": "Bearer sk-nope-123456789"}).status_code
        == 401
    )
    assert (
        httpx.post(
            f"{url}/chat/completions", json=chat_body("no-such-model"), headers={"authorization": f"Bearer {MASTER_KEY}"}
        ).status_code
        == 404
    )


def _settled(base_url: str, name: str, expected: float, timeout_s: float = 5.0) -> dict:
    """Metrics are updated by the sink task just after the response: wait until they show it."""
    deadline = time.monotonic() + timeout_s
    while True:
        samples = scrape(base_url)
        if value(samples, name) >= expected or time.monotonic() > deadline:
            return samples
        time.sleep(0.05)


def _check(samples: dict) -> None:
    dep = "openai/upstream-model#0"
    assert value(samples, "lockgate_requests_total") == 6
    assert value(samples, "lockgate_requests_total", model="gpt-test", deployment=dep, status="200", error_type="none") == 3
    assert value(samples, "lockgate_requests_total", model="gpt-failover", deployment="secondary", status="200") == 1
    assert value(samples, "lockgate_requests_total", status="401", error_type="caller_authentication") == 1
    assert value(samples, "lockgate_requests_total", status="404", error_type="caller_model_not_found") == 1
    assert value(samples, "lockgate_request_duration_seconds_count", model="gpt-test") == 3
    assert value(samples, "lockgate_time_to_first_token_seconds_count", model="gpt-test") == 1
    assert value(samples, "lockgate_tokens_total", model="gpt-test", kind="prompt") == 27
    assert value(samples, "lockgate_tokens_total", model="gpt-test", kind="completion") == 21
    assert abs(value(samples, "lockgate_cost_usd_total", model="gpt-test") - 3 * 23e-6) < 1e-12
    assert value(samples, "lockgate_upstream_errors_total", deployment="primary", error_type="provider_server_error") == 1
    assert value(samples, "lockgate_failovers_total", model="gpt-failover", deployment="primary") == 1
    assert value(samples, "lockgate_retries_total", model="gpt-failover") == 1
    assert value(samples, "lockgate_auth_failures_total") == 1
    assert value(samples, "lockgate_requests_in_flight") == 0
    assert value(samples, "lockgate_deployment_up", model="gpt-failover", deployment="primary") == 1
    assert value(samples, "lockgate_sink_dropped_total") == 0


def test_metrics_after_a_known_sequence(start_gateway, fake_openai: FakeOpenAI) -> None:
    gw = start_gateway(telemetry_config(fake_openai))
    _sequence(gw.url, fake_openai)
    _check(_settled(gw.base_url, "lockgate_requests_total", 6))
    text = httpx.get(f"{gw.base_url}/metrics").text
    assert MASTER_KEY not in text and "sk-nope" not in text and "master" not in text  # no keys, no key ids


def test_metrics_sum_over_two_workers(start_gateway, fake_openai: FakeOpenAI) -> None:
    gw = start_gateway(telemetry_config(fake_openai), workers=2)
    _sequence(gw.url, fake_openai)
    _settled(gw.base_url, "lockgate_requests_total", 6)
    time.sleep(1.2)  # let both workers' state samplers run once
    for _ in range(6):  # each scrape may land on either worker: every one must see the whole
        _check(scrape(gw.base_url))


def test_in_flight_counts_an_open_stream(start_gateway, fake_openai: FakeOpenAI) -> None:
    gw = start_gateway(telemetry_config(fake_openai))
    fake_openai.hold_after_first = hold = threading.Event()
    client = openai.OpenAI(base_url=gw.url, api_key=MASTER_KEY, max_retries=0)
    stream = client.chat.completions.create(**chat_body(), stream=True)
    first = next(iter(stream))
    assert first.choices
    try:
        assert value(scrape(gw.base_url), "lockgate_requests_in_flight") == 1
    finally:
        hold.set()
    list(stream)
    deadline = time.monotonic() + 3
    while value(scrape(gw.base_url), "lockgate_requests_in_flight") != 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert value(scrape(gw.base_url), "lockgate_requests_in_flight") == 0


def test_metrics_can_be_turned_off(start_gateway, fake_openai: FakeOpenAI) -> None:
    gw = start_gateway(telemetry_config(fake_openai, telemetry={"metrics": False}))
    assert httpx.get(f"{gw.base_url}/metrics").status_code == 404
