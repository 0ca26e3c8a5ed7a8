"""OpenTelemetry spans: captured in memory from an in-process gateway, and exported over OTLP/HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from lockgate.app import create_app
from lockgate.config import parse_config
from lockgate.telemetry.tracing import Tracing, otlp_traces_url
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.posthog_capture import CaptureServer
from tests.harness import MASTER_KEY
from tests.telemetry_support import chat_body, telemetry_config

AUTH = {"authorization": f"Bearer {MASTER_KEY}"}


@pytest.fixture
async def traced(fake_openai: FakeOpenAI, tmp_path: Path):
    """An in-process gateway whose pipeline is traced into memory; yields (client, exporter)."""
    cfg = telemetry_config(fake_openai, database={"url": f"sqlite:///{tmp_path}/lockgate.db"})
    app = create_app(parse_config(cfg), configure_logs=False)
    gateway = app.state.gateway
    await gateway.start()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    Tracing(provider).instrument(gateway.pipeline)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
        yield client, exporter
    await gateway.stop()


def _by_name(exporter: InMemorySpanExporter) -> dict[str, Any]:
    return {s.name: s for s in exporter.get_finished_spans()}


async def test_spans_for_stages_and_attempts(traced, fake_openai: FakeOpenAI) -> None:
    client, exporter = traced
    response = await client.post("/v1/chat/completions", json=chat_body(max_tokens=50, temperature=0.5), headers=AUTH)
    assert response.status_code == 200
    spans = _by_name(exporter)
    root = spans["chat gpt-test"]
    assert {"authenticate", "parse", "resolve", "route", "chat upstream-model"} <= set(spans)
    assert any(name.startswith("admit ") for name in spans)
    for name in ("authenticate", "parse", "resolve", "route"):
        assert spans[name].parent.span_id == root.context.span_id, name
    attempt = spans["chat upstream-model"]
    assert attempt.parent.span_id == spans["route"].context.span_id
    assert attempt.kind.name == "CLIENT" and root.kind.name == "SERVER"
    expected = {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": "openai",
        "gen_ai.request.model": "gpt-test",
        "gen_ai.response.model": "upstream-model",
        "gen_ai.usage.input_tokens": 9,
        "gen_ai.usage.output_tokens": 7,
        "gen_ai.request.max_tokens": 50,
        "gen_ai.request.temperature": 0.5,
        "http.response.status_code": 200,
        "lockgate.request_id": response.headers["x-request-id"],
        "lockgate.attempts": 1,
    }
    assert {k: root.attributes.get(k) for k in expected} == expected
    assert attempt.attributes["gen_ai.request.model"] == "upstream-model"
    assert attempt.attributes["gen_ai.usage.input_tokens"] == 9
    assert attempt.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert attempt.attributes["server.address"] == "127.0.0.1"
    assert len({s.context.trace_id for s in exporter.get_finished_spans()}) == 1


async def test_failover_gives_one_span_per_attempt(traced, fake_openai: FakeOpenAI) -> None:
    client, exporter = traced
    fake_openai.faults.append({"status": 500})
    assert (await client.post("/v1/chat/completions", json=chat_body("gpt-failover"), headers=AUTH)).status_code == 200
    attempts = [s for s in exporter.get_finished_spans() if s.name == "chat upstream-model"]
    assert [(s.attributes["lockgate.deployment"], s.status.status_code.name) for s in attempts] == [
        ("primary", "ERROR"),
        ("secondary", "UNSET"),
    ]
    assert attempts[0].attributes["error.type"] == "provider_server_error"


async def test_stream_has_a_relay_span_and_usage_at_the_end(traced) -> None:
    client, exporter = traced
    body = chat_body(stream=True, stream_options={"include_usage": True})
    async with client.stream("POST", "/v1/chat/completions", json=body, headers=AUTH) as response:
        assert b"[DONE]" in b"".join([chunk async for chunk in response.aiter_bytes()])
    spans = _by_name(exporter)
    root, relay = spans["chat gpt-test"], spans["relay"]
    assert relay.parent.span_id == root.context.span_id
    assert root.end_time >= relay.end_time
    assert root.attributes["gen_ai.usage.output_tokens"] == 7 and root.attributes["lockgate.stream"] is True


async def test_errors_end_the_request_span(traced) -> None:
    client, exporter = traced
    bad = await client.post("/v1/chat/completions", json=chat_body(), headers={"authorization": "Bearer sk-nope-123456789"})
    assert bad.status_code == 401
    [root] = [s for s in exporter.get_finished_spans() if s.kind.name == "SERVER"]
    assert root.attributes["http.response.status_code"] == 401 and root.status.status_code.name == "ERROR"
    assert _by_name(exporter)["authenticate"].attributes["error.type"] == "caller_authentication"


async def test_no_tracing_without_an_endpoint(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    """Off means the plain pipeline: no wrappers, no tracer call on the hot path."""
    assert Tracing.from_endpoint(None) is None and Tracing.from_endpoint("") is None
    cfg = telemetry_config(fake_openai, database={"url": f"sqlite:///{tmp_path}/lockgate.db"})
    gateway = create_app(parse_config(cfg), configure_logs=False).state.gateway
    await gateway.start()
    try:
        assert gateway.telemetry.tracing is None
        assert "handle" not in vars(gateway.pipeline) and gateway.pipeline.router is gateway.router
    finally:
        await gateway.stop()
    assert otlp_traces_url("http://collector:4318/") == "http://collector:4318/v1/traces"


def test_spans_exported_over_otlp_http(start_gateway, fake_openai: FakeOpenAI) -> None:
    collector = CaptureServer().start()
    try:
        gw = start_gateway(telemetry_config(fake_openai, telemetry={"otlp_endpoint": collector.url}))
        client = openai.OpenAI(base_url=gw.url, api_key=MASTER_KEY, max_retries=0)
        client.chat.completions.create(**chat_body())
        gw.stop()  # shutdown flushes the batch processor
        spans = collector.otlp_spans()
        names = {s.name for s in spans}
        assert {"chat gpt-test", "chat upstream-model", "authenticate", "route"} <= names
        root = next(s for s in spans if s.name == "chat gpt-test")
        attrs = {a.key: a.value for a in root.attributes}
        assert attrs["gen_ai.request.model"].string_value == "gpt-test"
        assert attrs["gen_ai.usage.input_tokens"].int_value == 9
        assert all(r.headers["content-type"] == "application/x-protobuf" for r in collector.requests)
    finally:
        collector.stop()
