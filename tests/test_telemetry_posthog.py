"""PostHog analytics: exact event payloads (pure), and the real client against a capture server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from lockgate.records import RequestRecord
from lockgate.telemetry.posthog import events_for
from tests.fakes.openai_upstream import UPSTREAM_KEY, FakeOpenAI
from tests.fakes.posthog_capture import CaptureServer
from tests.harness import MASTER_KEY
from tests.telemetry_support import chat_body, telemetry_config

POSTHOG_KEY = "phc_test_project_token"


@pytest.fixture
def capture() -> Iterator[CaptureServer]:
    server = CaptureServer().start()
    yield server
    server.stop()


def _record(**over: Any) -> RequestRecord:
    base: dict[str, Any] = dict(
        request_id="req_1",
        endpoint="chat",
        public_model="gpt-x",
        status=200,
        started_at=1.0,
        latency_ms=1250.0,
        streamed=True,
        key_id="key_1",
        user="alice",
        team="team-a",
        provider="openai",
        deployment="dep-a",
        upstream_model="up-x",
        api_base="https://api.example.com/v1",
        attempts=1,
        prompt_tokens=1000,
        completion_tokens=500,
        cached_tokens=200,
        cache_creation_tokens=0,
        reasoning_tokens=100,
        ttft_ms=250.0,
        # The pipeline prices every record once (usage.pricing.call_cost); telemetry only reads it.
        input_cost_usd=0.0011,
        output_cost_usd=0.0009,
        cost_usd=0.002,
    )
    base.update(over)
    return RequestRecord(**base)


# --- payloads (pure) ----------------------------------------------------------------------


def test_generation_event_has_posthogs_schema() -> None:
    [(name, distinct, props, groups)] = events_for(_record(), privacy_mode=True)
    assert (name, distinct, groups) == ("$ai_generation", "alice", {"team": "team-a"})
    assert props == {
        "$ai_trace_id": "req_1",
        "$ai_span_id": "req_1.1",
        "$ai_span_name": "chat",
        "$ai_parent_id": "req_1",
        "$ai_model": "up-x",
        "$ai_provider": "openai",
        "$ai_input_tokens": 1000,
        "$ai_output_tokens": 500,
        "$ai_total_tokens": 1500,
        "$ai_cache_read_input_tokens": 200,
        "$ai_cache_creation_input_tokens": 0,
        "$ai_cache_reporting_exclusive": False,
        "$ai_reasoning_tokens": 100,
        "$ai_latency": 1.25,
        "$ai_time_to_first_token": 0.25,
        "$ai_http_status": 200,
        "$ai_is_error": False,
        "$ai_stream": True,
        "$ai_base_url": "https://api.example.com/v1",
        "$ai_input_cost_usd": 0.0011,
        "$ai_output_cost_usd": 0.0009,
        "$ai_total_cost_usd": 0.002,
        "lockgate_key_id": "key_1",
        "lockgate_team": "team-a",
        "lockgate_model": "gpt-x",
        "lockgate_endpoint": "chat",
        "lockgate_deployment": "dep-a",
        "lockgate_attempt": 1,
        "lockgate_usage_estimated": False,
        "lockgate_partial": False,
    }


def test_unknown_price_sends_no_cost_at_all() -> None:
    [(_, _, props, _)] = events_for(_record(cost_usd=None, input_cost_usd=None, output_cost_usd=None))
    assert not {k for k in props if "cost" in k}  # never a silent 0


def test_content_only_outside_privacy_mode() -> None:
    content = {"input": [{"role": "user", "content": "secret plans"}], "output_choices": [{"index": 0}]}
    [(_, _, private, _)] = events_for(_record(content=content), privacy_mode=True)
    assert "$ai_input" not in private and "$ai_output_choices" not in private
    [(_, _, public, _)] = events_for(_record(content=content), privacy_mode=False)
    assert public["$ai_input"] == content["input"]
    assert public["$ai_output_choices"] == content["output_choices"]


def test_failed_attempt_is_its_own_generation_in_the_same_trace() -> None:
    record = _record(
        request_id="req_1.1",
        parent_request_id="req_1",
        attempt=1,
        status=502,
        error_type="provider_server_error",
        error_message="upstream said 500 (key sk-abcdefghijklmnop)",
        prompt_tokens=0,
        completion_tokens=0,
        cached_tokens=0,
        reasoning_tokens=0,
        ttft_ms=None,
    )
    [(name, _, props, _)] = events_for(record)
    assert name == "$ai_generation"
    assert (props["$ai_trace_id"], props["$ai_span_id"]) == ("req_1", "req_1.1")
    assert props["$ai_is_error"] is True and props["$ai_http_status"] == 502
    assert props["$ai_error"] == "upstream said 500 (key [redacted])"
    assert props["$ai_error_type"] == "provider_server_error"
    assert "$ai_time_to_first_token" not in props


def test_gateway_events_from_refusals_and_failover() -> None:
    refusal = dict(
        deployment=None,
        provider=None,
        upstream_model=None,
        api_base=None,
        attempts=0,
        status=429,
        prompt_tokens=0,
        completion_tokens=0,
        cached_tokens=0,
        reasoning_tokens=0,
        ttft_ms=None,
    )
    [(name, distinct, props, groups)] = events_for(
        _record(**refusal, error_type="policy_rate_limited", error_message="Rate limit reached for requests"),
    )
    assert (name, distinct, groups) == ("lockgate rate limited", "alice", {"team": "team-a"})
    assert props["lockgate_reason"] == "Rate limit reached for requests" and props["lockgate_status"] == 429
    [(name, _, _, _)] = events_for(_record(**refusal, error_type="policy_budget_exceeded"))
    assert name == "lockgate budget exceeded"
    anonymous = {**refusal, "status": 401, "key_id": None, "user": None, "team": None}
    [(name, distinct, props, groups)] = events_for(
        _record(**anonymous, error_type="caller_authentication", error_message="Incorrect API key provided."),
    )
    assert (name, distinct, groups) == ("lockgate auth failed", "req_1", None)
    assert props["$process_person_profile"] is False
    events = events_for(_record(attempts=3))
    assert [e[0] for e in events] == ["$ai_generation", "lockgate failover"]
    assert events[0][2]["$ai_span_id"] == "req_1.3"
    assert events[1][2]["lockgate_attempts"] == 3 and events[1][2]["lockgate_succeeded"] is True


def test_distinct_id_falls_back_to_the_key() -> None:
    [(_, distinct, _, groups)] = events_for(_record(user=None, team=None))
    assert (distinct, groups) == ("key_1", None)


# --- the real client against a capture server --------------------------------------------------


def _posthog(capture: CaptureServer, **extra: Any) -> dict[str, Any]:
    return {"api_key": POSTHOG_KEY, "host": capture.url, "flush_interval_s": 0.1, "flush_at": 1, **extra}


def test_events_reach_posthog_batched_and_exact(start_gateway, fake_openai: FakeOpenAI, capture: CaptureServer) -> None:
    gw = start_gateway(telemetry_config(fake_openai, posthog=_posthog(capture)))
    client = openai.OpenAI(base_url=gw.url, api_key=MASTER_KEY, max_retries=0)
    done = client.chat.completions.with_raw_response.create(**chat_body())
    request_id = done.headers["x-request-id"]
    stream = client.chat.completions.create(**chat_body(), stream=True, stream_options={"include_usage": True})
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    fake_openai.faults.append({"status": 500})
    failover = client.chat.completions.with_raw_response.create(**chat_body("gpt-failover"))
    failover_id = failover.headers["x-request-id"]
    bad = httpx.post(f"{gw.url}/chat/completions", json=chat_body(), headers={"authorization": "Bearer sk-wrong-0123456789abc"})
    assert bad.status_code == 401

    events = capture.wait_for_events(6)
    by_name: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_name.setdefault(event["event"], []).append(event)
    assert sorted((k, len(v)) for k, v in by_name.items()) == [
        ("$ai_generation", 4),
        ("lockgate auth failed", 1),
        ("lockgate failover", 1),
    ]

    first = next(e for e in by_name["$ai_generation"] if e["properties"]["$ai_trace_id"] == request_id)
    props = first["properties"]
    assert first["distinct_id"] == "master"
    expected = {
        "$ai_span_id": f"{request_id}.1",
        "$ai_model": "upstream-model",
        "$ai_provider": "openai",
        "$ai_input_tokens": 9,
        "$ai_output_tokens": 7,
        "$ai_cache_read_input_tokens": 0,
        "$ai_cache_creation_input_tokens": 0,
        "$ai_reasoning_tokens": 0,
        "$ai_http_status": 200,
        "$ai_is_error": False,
        "$ai_stream": False,
        "$ai_base_url": fake_openai.url,
        "$ai_input_cost_usd": pytest.approx(9e-6),
        "$ai_output_cost_usd": pytest.approx(14e-6),
        "$ai_total_cost_usd": pytest.approx(23e-6),
        "lockgate_model": "gpt-test",
    }
    assert {k: props.get(k) for k in expected} == expected
    assert 0 < props["$ai_latency"] < 5 and "$ai_time_to_first_token" not in props
    assert "$ai_input" not in props and "$ai_output_choices" not in props  # privacy mode is the default

    streamed = next(e["properties"] for e in by_name["$ai_generation"] if e["properties"]["$ai_stream"])
    assert 0 < streamed["$ai_time_to_first_token"] <= streamed["$ai_latency"]

    tries = sorted(
        (e["properties"] for e in by_name["$ai_generation"] if e["properties"]["$ai_trace_id"] == failover_id),
        key=lambda p: p["$ai_span_id"],
    )
    assert [(p["$ai_span_id"], p["lockgate_deployment"], p["$ai_is_error"]) for p in tries] == [
        (f"{failover_id}.1", "primary", True),
        (f"{failover_id}.2", "secondary", False),
    ]
    assert tries[0]["$ai_error_type"] == "provider_server_error"
    assert by_name["lockgate failover"][0]["properties"]["lockgate_attempts"] == 2

    # No secret anywhere in what PostHog received (its own project token is expected in the batch).
    raw = b"".join(r.body for r in capture.requests)
    for secret in (MASTER_KEY, UPSTREAM_KEY, "sk-wrong-0123456789abc"):
        assert secret.encode() not in raw
    assert all(r.path == "/batch/" for r in capture.requests)
    assert any(r.headers.get("content-encoding") == "gzip" for r in capture.requests)


def test_prompts_and_completions_only_when_privacy_is_off(start_gateway, fake_openai: FakeOpenAI, capture: CaptureServer) -> None:
    gw = start_gateway(telemetry_config(fake_openai, posthog=_posthog(capture, privacy_mode=False)))
    client = openai.OpenAI(base_url=gw.url, api_key=MASTER_KEY, max_retries=0)
    client.chat.completions.create(**chat_body())
    list(client.chat.completions.create(**chat_body(), stream=True))
    events = capture.wait_for_events(2)
    inputs = [e["properties"]["$ai_input"] for e in events]
    assert inputs == [[{"role": "user", "content": "Say hello"}]] * 2
    outputs = sorted((e["properties"]["$ai_stream"], e["properties"]["$ai_output_choices"][0]) for e in events)
    assert outputs[0][1]["message"]["content"] == "Hello from the fake upstream."
    assert outputs[1][1] == {"index": 0, "message": {"role": "assistant", "content": "Hello from the fake upstream."}}


def test_posthog_outage_never_slows_requests(start_gateway, fake_openai: FakeOpenAI) -> None:
    hanging = CaptureServer(mode="hang").start()
    try:
        cfg = telemetry_config(fake_openai, posthog={**_posthog(hanging), "timeout_s": 30, "shutdown_timeout_s": 1})
        gw = start_gateway(cfg)
        client = openai.OpenAI(base_url=gw.url, api_key=MASTER_KEY, max_retries=0)
        client.chat.completions.create(**chat_body())  # warm up
        started = time.perf_counter()
        for _ in range(20):
            client.chat.completions.create(**chat_body())
        assert time.perf_counter() - started < 2.0
        assert hanging.requests, "the client did try to send"
        stopped = time.perf_counter()
        gw.stop()
        assert time.perf_counter() - stopped < 6.0, "shutdown waited on a dead PostHog"
        assert '"posthog_flush_timeout"' in gw.logs()
    finally:
        hanging.stop()


def test_claude_code_session_becomes_ai_session_id() -> None:
    [(_, _, props, _)] = events_for(_record(endpoint="messages", extra={"session_id": "sess-42"}))
    assert props["$ai_session_id"] == "sess-42" and props["$ai_span_name"] == "messages"
    [(_, _, plain, _)] = events_for(_record())
    assert "$ai_session_id" not in plain
