"""Exactly one record per request (and one per failed attempt), counted where duplicates would show.

Usage rows collapse duplicates (the request id is their key), so these checks count the access-log
lines per request id and the request metrics, and compare with ==: a record emitted twice fails.
Every ending is covered: an answer, a stream, an upstream error, a refusal before any upstream, a
stream the client abandons, a stream that fails over before its first byte, and one resumed mid-way.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import openai_deployment
from tests.fakes.openai_upstream import FakeOpenAI
from tests.harness import MASTER_KEY, GatewayProcess
from tests.telemetry_support import PRICES, chat_body, scrape, telemetry_config, value

AUTH = {"authorization": f"Bearer {MASTER_KEY}"}


def _config(fake: FakeOpenAI) -> dict[str, Any]:
    cfg = telemetry_config(fake)
    cfg["models"].append(
        {
            "name": "gpt-resume",
            "stream_resume": True,
            "deployments": [openai_deployment(fake, id="first", **PRICES), openai_deployment(fake, id="second", **PRICES)],
        }
    )
    return cfg


def _stream_id(client: openai.OpenAI, model: str) -> str:
    """A streamed chat read to its end; its request id."""
    with client.chat.completions.with_streaming_response.create(**chat_body(model), stream=True) as raw:
        assert "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
        return raw.headers["x-request-id"]


def _abandoned_stream_id(gw: GatewayProcess, fake: FakeOpenAI) -> str:
    """A stream the client leaves after its first words (the fake holds the rest meanwhile)."""
    fake.hold_after_first = hold = threading.Event()
    try:
        with httpx.Client(timeout=10) as http:
            with http.stream("POST", f"{gw.url}/chat/completions", json=chat_body(stream=True), headers=AUTH) as resp:
                for line in resp.iter_lines():
                    if '"Hello ' in line:
                        break
                request_id = resp.headers["x-request-id"]
        # The gateway sees the client leave while the upstream still holds the rest of the stream.
        deadline = time.monotonic() + 5
        while request_id not in {line["request_id"] for line in gw.access_lines()} and time.monotonic() < deadline:
            time.sleep(0.05)
        return request_id
    finally:
        hold.set()


def _lines_once_settled(gw: GatewayProcess, expected_ids: set[str]) -> list[dict[str, Any]]:
    """The access lines once every expected id has one and a later request's line is out too.

    Records reach the log in order, so once a sentinel request's line is written, any duplicate of an
    earlier record has been written as well; a short pause more catches a late one.
    """
    deadline = time.monotonic() + 10
    while not expected_ids <= {line["request_id"] for line in gw.access_lines()} and time.monotonic() < deadline:
        time.sleep(0.05)
    sentinel = httpx.get(f"{gw.url}/models", headers=AUTH)  # not an inference call: no record
    assert sentinel.status_code == 200
    last = openai.OpenAI(base_url=gw.url, api_key=MASTER_KEY, max_retries=0)
    last_id = last.chat.completions.with_raw_response.create(**chat_body("mock-gpt")).headers["x-request-id"]
    while last_id not in {line["request_id"] for line in gw.access_lines()} and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    return [line for line in gw.access_lines() if line["request_id"] != last_id]


def test_each_request_and_each_failed_attempt_has_exactly_one_record(
    start_gateway: Callable[..., GatewayProcess], fake_openai: FakeOpenAI
) -> None:
    gw = start_gateway(_config(fake_openai))
    client = openai.OpenAI(base_url=gw.url, api_key=MASTER_KEY, max_retries=0, timeout=20)

    answered = client.chat.completions.with_raw_response.create(**chat_body()).headers["x-request-id"]
    streamed = _stream_id(client, "gpt-test")
    fake_openai.faults.append({"status": 400, "message": "bad thing"})
    with pytest.raises(openai.BadRequestError) as upstream_error:
        client.chat.completions.create(**chat_body())
    with pytest.raises(openai.NotFoundError) as refused:
        client.chat.completions.create(**chat_body("no-such-model"))
    abandoned = _abandoned_stream_id(gw, fake_openai)
    fake_openai.faults.append({"status": 500})
    failed_over = client.chat.completions.with_raw_response.create(**chat_body("gpt-failover")).headers["x-request-id"]
    fake_openai.faults.append({"status": 500})
    failed_over_stream = _stream_id(client, "gpt-failover")
    fake_openai.faults.append({"drop_after": 2})
    resumed_stream = _stream_id(client, "gpt-resume")

    requests = {
        answered: 200,
        streamed: 200,
        upstream_error.value.response.headers["x-request-id"]: 400,
        refused.value.response.headers["x-request-id"]: 404,
        abandoned: 499,
        failed_over: 200,
        failed_over_stream: 200,
        resumed_stream: 200,
    }
    attempts = {f"{rid}.1": rid for rid in (failed_over, failed_over_stream, resumed_stream)}
    assert len(requests) == 8  # eight distinct request ids

    lines = _lines_once_settled(gw, set(requests) | set(attempts))
    per_id = Counter(line["request_id"] for line in lines)
    assert per_id == Counter({rid: 1 for rid in [*requests, *attempts]}), per_id
    by_id = {line["request_id"]: line for line in lines}
    assert {rid: by_id[rid]["status"] for rid in requests} == requests
    assert {rid: by_id[rid]["parent_request_id"] for rid in attempts} == attempts
    assert by_id[abandoned]["partial"] is True and by_id[resumed_stream]["partial"] is False

    # The metrics count each request once (the sentinel mock-gpt call included) and each failed attempt once.
    samples = scrape(gw.base_url)
    assert value(samples, "lockgate_requests_total") == 8 + 1
    assert value(samples, "lockgate_requests_total", model="gpt-test", status="200") == 2
    assert value(samples, "lockgate_requests_total", model="gpt-test", status="400") == 1
    assert value(samples, "lockgate_requests_total", model="gpt-test", status="499") == 1
    assert value(samples, "lockgate_requests_total", status="404") == 1
    assert value(samples, "lockgate_requests_total", model="gpt-failover", deployment="secondary", status="200") == 2
    assert value(samples, "lockgate_requests_total", model="gpt-resume", deployment="second", status="200") == 1
    assert value(samples, "lockgate_failovers_total") == 3
    assert value(samples, "lockgate_failovers_total", model="gpt-resume", deployment="first") == 1
    assert value(samples, "lockgate_request_duration_seconds_count", model="gpt-test") == 4
    assert value(samples, "lockgate_time_to_first_token_seconds_count", model="gpt-failover") == 1
    # Tokens: 9 prompt tokens for each of gpt-test's answer, stream and abandoned stream; the 400 has none.
    assert value(samples, "lockgate_tokens_total", model="gpt-test", kind="prompt") == 2 * 9 + by_id[abandoned]["prompt_tokens"]
