"""Structured logs: the access line's fields, start-up events, the level, and no secret anywhere."""

from __future__ import annotations

import json

import httpx
import openai

from tests.fakes.openai_upstream import UPSTREAM_KEY, FakeOpenAI
from tests.harness import MASTER_KEY
from tests.telemetry_support import chat_body, telemetry_config

WRONG_KEY = "sk-wrong-key-abcdefghijklmnop"
JWT_LIKE = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"


def test_access_lines_and_no_secrets(start_gateway, fake_openai: FakeOpenAI) -> None:
    gw = start_gateway(telemetry_config(fake_openai))
    client = openai.OpenAI(base_url=gw.url, api_key=MASTER_KEY, max_retries=0)
    ok = client.chat.completions.with_raw_response.create(**chat_body())
    list(client.chat.completions.create(**chat_body(), stream=True, stream_options={"include_usage": True}))
    for token in (WRONG_KEY, JWT_LIKE):
        assert (
            httpx.post(f"{gw.url}/chat/completions", json=chat_body(), headers={"authorization": f"Bearer {token}"}).status_code
            == 401
        )
    fake_openai.faults.append({"status": 500, "message": f"Incorrect API key provided: {UPSTREAM_KEY}"})
    httpx.post(f"{gw.url}/chat/completions", json=chat_body(), headers={"authorization": f"Bearer {MASTER_KEY}"})

    lines = gw.wait_for_records(6)
    assert len(lines) == 6  # the upstream 500 was retried: one line for the failed attempt too
    first = next(line for line in lines if line["request_id"] == ok.headers["x-request-id"])
    expected = {
        "key_id": "master",
        "user": None,
        "public_model": "gpt-test",
        "deployment": "openai/upstream-model#0",
        "status": 200,
        "prompt_tokens": 9,
        "completion_tokens": 7,
        "attempts": 1,
        "ttft_ms": None,
        "level": "info",
        "event": "request",
    }
    assert {k: first.get(k) for k in expected} == expected
    assert abs(first["cost_usd"] - 23e-6) < 1e-12 and first["latency_ms"] > 0
    streamed = next(line for line in lines if line["streamed"])
    assert 0 < streamed["ttft_ms"] <= streamed["latency_ms"]
    refused = [line for line in lines if line["status"] == 401]
    assert len(refused) == 2 and all(r["key_id"] is None and r["error_type"] == "caller_authentication" for r in refused)

    logs = gw.logs()
    for secret in (MASTER_KEY, UPSTREAM_KEY, WRONG_KEY, JWT_LIKE):
        assert secret not in logs
    events = [json.loads(line)["event"] for line in logs.splitlines() if line.startswith("{")]
    assert "started" in events and "telemetry" in events


def test_log_level_is_configurable(start_gateway, fake_openai: FakeOpenAI) -> None:
    gw = start_gateway(telemetry_config(fake_openai, telemetry={"log_level": "warning"}))
    client = openai.OpenAI(base_url=gw.url, api_key=MASTER_KEY, max_retries=0)
    client.chat.completions.create(**chat_body())
    gw.stop()
    assert gw.access_lines() == []  # access lines are info
    assert '"event":"started"' not in gw.logs()
