"""End to end: the official `anthropic` SDK -> `lockgate serve` /v1/messages -> the fake OpenAI upstream (translated)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from tests.conftest import basic_config
from tests.fakes.openai_upstream import FakeOpenAI
from tests.harness import MASTER_KEY, GatewayProcess
from tests.messages_support import check_and_accumulate, parse_sse

USER = [{"role": "user", "content": "Hello"}]
WEATHER = {
    "name": "get_weather",
    "description": "Weather",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


@pytest.fixture(scope="module")
def gateway(fake_openai_server: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    config = basic_config(fake_openai_server)
    # Failover before the first byte: a dead deployment first, the fake second.
    dead = dict(config["models"][2]["deployments"][0], priority=0)
    live = dict(config["models"][0]["deployments"][0], priority=1)
    config["models"].append({"name": "gpt-failover", "deployments": [dead, live]})
    # A 429 cools its deployment down for retry-after seconds: that test gets a model of its own.
    config["models"].append({"name": "gpt-ratelimited", "deployments": [live]})
    # Priced, for the budget test: 9 x $1 + 7 x $4 per million tokens = $37e-6 a call.
    config["models"].append(
        {"name": "gpt-priced", "deployments": [dict(live, input_cost_per_mtok=1.0, output_cost_per_mtok=4.0)]}
    )
    # A deployment whose model stops at 1000 output tokens.
    config["models"].append({"name": "gpt-capped", "deployments": [dict(live, max_output_tokens=1000)]})
    config["router"] = {"max_attempts": 2, "cooldown": {"failures": 1000}}
    gw = GatewayProcess(config, tmp_path_factory.mktemp("messages-gw")).start()
    yield gw
    gw.stop()


@pytest.fixture
def client(gateway: GatewayProcess, fake_openai: FakeOpenAI) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0)


def test_create_text_with_either_credential(
    gateway: GatewayProcess, client: anthropic.Anthropic, fake_openai: FakeOpenAI
) -> None:
    message = client.messages.create(
        model="gpt-test",
        max_tokens=50,
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        messages=USER,
    )
    assert message.type == "message" and message.id.startswith("msg_") and message.model == "gpt-test"
    assert message.content[0].type == "text" and message.content[0].text == "Hello from the fake upstream."
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (9, 7)
    upstream = fake_openai.requests[-1].body
    assert upstream["model"] == "upstream-model" and upstream["max_completion_tokens"] == 50
    assert upstream["messages"][0] == {"role": "system", "content": "Be brief."}  # cache_control dropped
    bearer = anthropic.Anthropic(base_url=gateway.base_url, auth_token=MASTER_KEY, max_retries=0)
    assert bearer.messages.create(model="gpt-test", max_tokens=5, messages=USER).content[0].text
    nobody = anthropic.Anthropic(base_url=gateway.base_url, api_key="lg-wrong-key-000000", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as info:
        nobody.messages.create(model="gpt-test", max_tokens=5, messages=USER)
    assert info.value.body["error"]["type"] == "authentication_error"
    assert info.value.response.headers["request-id"].startswith("req_")


def test_stream_helper_and_final_message(client: anthropic.Anthropic, fake_openai: FakeOpenAI) -> None:
    texts = []
    with client.messages.stream(model="gpt-test", max_tokens=50, messages=USER) as stream:
        for text in stream.text_stream:
            texts.append(text)
        final = stream.get_final_message()
    assert "".join(texts) == final.content[0].text == "Hello from the fake upstream."
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 7 and final.usage.input_tokens == 9
    assert fake_openai.requests[-1].body["stream_options"] == {"include_usage": True}


def test_raw_stream_invariants_with_tools(gateway: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    fake_openai.reply.content = None
    fake_openai.reply.tool_calls = [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": json.dumps({"city": "Paris, the capital"})},
        },
        {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": json.dumps({"city": "Rome"})}},
    ]
    body = {"model": "gpt-test", "max_tokens": 50, "messages": USER, "tools": [WEATHER], "stream": True}
    raw = httpx.post(
        f"{gateway.base_url}/v1/messages?beta=true",
        json=body,
        headers={"x-api-key": MASTER_KEY, "anthropic-version": "2023-06-01"},
    ).content
    message = check_and_accumulate(parse_sse(raw))  # every frame named, one start, 0..n-1, each closed
    assert [b["type"] for b in message["content"]] == ["tool_use", "tool_use"]  # no empty leading text block
    assert [b["input"] for b in message["content"]] == [{"city": "Paris, the capital"}, {"city": "Rome"}]
    assert message["stop_reason"] == "tool_use"


def test_interleaved_parallel_tool_calls_arrive_whole_in_order(client: anthropic.Anthropic, fake_openai: FakeOpenAI) -> None:
    # The upstream alternates the two calls' argument deltas; the SDK's stream helper sees each call whole.
    fake_openai.reply.content = None
    fake_openai.reply.interleave_tools = True
    first, second = {"city": "Paris, the capital of France"}, {"city": "Rome, also a capital"}
    fake_openai.reply.tool_calls = [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": json.dumps(first)}},
        {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": json.dumps(second)}},
    ]
    with client.messages.stream(model="gpt-test", max_tokens=50, messages=USER, tools=[WEATHER]) as stream:
        final = stream.get_final_message()
    assert [(b.type, getattr(b, "id", None), getattr(b, "input", None)) for b in final.content] == [
        ("tool_use", "call_1", first),
        ("tool_use", "call_2", second),
    ]
    assert final.stop_reason == "tool_use"


def test_max_tokens_clamped_to_the_deployments_output_limit(client: anthropic.Anthropic, fake_openai: FakeOpenAI) -> None:
    # Streamed, as Claude Code asks (the SDK refuses a non-streamed call this large).
    with client.messages.stream(model="gpt-capped", max_tokens=64000, messages=USER) as stream:
        assert stream.get_final_message().stop_reason == "end_turn"
    assert fake_openai.requests[-1].body["max_completion_tokens"] == 1000
    client.messages.create(model="gpt-capped", max_tokens=300, messages=USER)
    assert fake_openai.requests[-1].body["max_completion_tokens"] == 300
    with client.messages.stream(model="gpt-test", max_tokens=64000, messages=USER) as stream:  # no limit set
        stream.get_final_message()
    assert fake_openai.requests[-1].body["max_completion_tokens"] == 64000


def test_tools_round_trip_and_tool_choice(client: anthropic.Anthropic, fake_openai: FakeOpenAI) -> None:
    fake_openai.reply.content = None
    fake_openai.reply.tool_calls = [
        {"id": "call_9", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}
    ]
    first = client.messages.create(
        model="gpt-test",
        max_tokens=50,
        messages=USER,
        tools=[WEATHER],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
    )
    assert first.stop_reason == "tool_use"
    call = first.content[0]
    assert call.type == "tool_use" and call.id == "call_9" and call.input == {"city": "Oslo"}
    sent = fake_openai.requests[-1].body
    assert sent["tool_choice"] == "required" and sent["parallel_tool_calls"] is False
    assert sent["tools"][0]["function"]["parameters"] == WEATHER["input_schema"]

    fake_openai.reply.tool_calls = None
    fake_openai.reply.content = "It is sunny."
    history: list[Any] = [
        *USER,
        {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in first.content]},
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "call_9",
                    "content": [
                        {"type": "text", "text": "sunny"},
                        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                    ],
                },
                {"type": "text", "text": "Summarise."},
            ],
        },
    ]
    second = client.messages.create(
        model="gpt-test", max_tokens=50, messages=history, tools=[WEATHER], tool_choice={"type": "tool", "name": "get_weather"}
    )
    assert second.content[0].text == "It is sunny."
    sent = fake_openai.requests[-1].body
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "tool", "user"]
    assert sent["messages"][1]["tool_calls"][0]["id"] == "call_9"
    assert sent["messages"][2] == {"role": "tool", "tool_call_id": "call_9", "content": "sunny"}
    assert sent["messages"][3]["content"][0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}


def test_reasoning_arrives_as_a_thinking_block(client: anthropic.Anthropic, fake_openai: FakeOpenAI) -> None:
    fake_openai.reply.reasoning = "Think it through."
    with client.messages.stream(
        model="gpt-test", max_tokens=2000, messages=USER, thinking={"type": "enabled", "budget_tokens": 1024}
    ) as stream:
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[0].thinking == "Think it through. "
    assert fake_openai.requests[-1].body["reasoning_effort"] == "low"
    # Replaying that thinking block (its signature is not this deployment's) is dropped, not rejected.
    again = client.messages.create(
        model="gpt-test",
        max_tokens=50,
        messages=[
            *USER,
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in final.content]},
            {"role": "user", "content": "More"},
        ],
    )
    assert again.content[0].type == "thinking"
    assert fake_openai.requests[-1].body["messages"][1] == {"role": "assistant", "content": "Hello from the fake upstream."}


def test_stop_sequences_and_count_tokens(client: anthropic.Anthropic, fake_openai: FakeOpenAI) -> None:
    client.messages.create(
        model="gpt-test",
        max_tokens=50,
        messages=USER,
        stop_sequences=["END"],
        metadata={"user_id": "dev-7"},
        extra_body={"top_k": 5},
    )
    sent = fake_openai.requests[-1].body
    assert sent["stop"] == ["END"] and sent["user"] == "dev-7" and "top_k" not in sent
    short = client.messages.count_tokens(model="gpt-test", messages=USER)
    longer = client.beta.messages.count_tokens(
        model="gpt-test", messages=USER, tools=[WEATHER], system="A much longer system prompt, to count."
    )
    assert 0 < short.input_tokens < longer.input_tokens
    with pytest.raises(anthropic.NotFoundError) as info:
        client.messages.count_tokens(model="no-such-model", messages=USER)
    assert info.value.body["error"]["type"] == "not_found_error"


def test_beta_create(client: anthropic.Anthropic, fake_openai: FakeOpenAI) -> None:
    message = client.beta.messages.create(
        model="gpt-test", max_tokens=20, messages=USER, betas=["interleaved-thinking-2025-05-14"]
    )
    assert message.content[0].text
    assert "anthropic-beta" not in {k.lower() for k in fake_openai.requests[-1].headers}


@pytest.mark.parametrize(
    ("fault", "error", "etype"),
    [
        ({"status": 429, "headers": {"retry-after": "1"}, "type": "requests"}, anthropic.RateLimitError, "rate_limit_error"),
        ({"status": 500}, anthropic.InternalServerError, "api_error"),
        (
            {"status": 400, "message": "prompt is too long: 209375 tokens > 200000 maximum"},
            anthropic.BadRequestError,
            "invalid_request_error",
        ),
    ],
)
def test_upstream_errors_in_anthropic_shape(
    client: anthropic.Anthropic, fake_openai: FakeOpenAI, fault: dict[str, Any], error: type, etype: str
) -> None:
    fake_openai.faults.extend([fault, fault])  # both attempts
    model = "gpt-ratelimited" if fault["status"] == 429 else "gpt-test"
    with pytest.raises(error) as info:
        client.messages.create(model=model, max_tokens=5, messages=USER)
    body = info.value.body
    assert body["type"] == "error" and body["error"]["type"] == etype
    assert body["request_id"] == info.value.response.headers["request-id"]
    if "message" in fault:
        assert body["error"]["message"] == fault["message"]  # wording kept: Claude Code matches on it
    if fault["status"] == 429:
        assert info.value.response.headers["retry-after"] == "1"


def test_gateway_refusals_in_anthropic_shape(gateway: GatewayProcess, client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as info:
        client.messages.create(model="no-such-model", max_tokens=5, messages=USER)
    assert info.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(model="gpt-test", messages=USER, max_tokens=0)
    assert info.value.body["error"] == {
        "type": "invalid_request_error",
        "message": "max_tokens: Input should be a positive integer",
    }
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(
            model="gpt-test", max_tokens=5, messages=USER, tools=[{"type": "web_search_20250305", "name": "web_search"}]
        )
    assert info.value.body["error"]["type"] == "invalid_request_error" and "tools.0.type" in info.value.body["error"]["message"]
    bad = httpx.post(f"{gateway.base_url}/v1/messages", content=b"{not json", headers={"x-api-key": MASTER_KEY})
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    big = httpx.post(f"{gateway.base_url}/v1/messages", content=b"x" * (65 * 1024), headers={"x-api-key": MASTER_KEY})
    assert big.status_code == 413 and big.json()["error"]["type"] == "request_too_large"


def test_virtual_key_allowlist(gateway: GatewayProcess) -> None:
    admin = {"authorization": f"Bearer {MASTER_KEY}"}
    created = httpx.post(f"{gateway.base_url}/admin/keys", headers=admin, json={"name": "dev", "models": ["mock-gpt"]})
    assert created.status_code == 201, created.text
    dev = anthropic.Anthropic(base_url=gateway.base_url, api_key=created.json()["key"], max_retries=0)
    assert dev.messages.create(model="mock-gpt", max_tokens=20, messages=USER).content[0].text
    with pytest.raises(anthropic.PermissionDeniedError) as info:
        dev.messages.create(model="gpt-test", max_tokens=20, messages=USER)
    assert info.value.body["error"]["type"] == "permission_error"


def test_virtual_key_budget_refusal_in_anthropic_shape(gateway: GatewayProcess) -> None:
    admin = {"authorization": f"Bearer {MASTER_KEY}"}
    created = httpx.post(
        f"{gateway.base_url}/admin/keys",
        headers=admin,
        json={"name": "capped", "max_budget_usd": 74e-6, "budget_period": "daily"},
    )
    assert created.status_code == 201, created.text
    capped = anthropic.Anthropic(base_url=gateway.base_url, auth_token=created.json()["key"], max_retries=0)
    capped.messages.create(model="gpt-priced", max_tokens=20, messages=USER)
    with capped.messages.stream(model="gpt-priced", max_tokens=20, messages=USER) as stream:
        stream.get_final_message()  # streamed calls are charged too
    with pytest.raises(anthropic.RateLimitError) as info:
        capped.messages.create(model="gpt-priced", max_tokens=20, messages=USER)
    assert info.value.body["type"] == "error" and info.value.body["error"]["type"] == "rate_limit_error"
    assert "budget" in info.value.body["error"]["message"]


def test_mid_stream_break_becomes_an_error_event(
    gateway: GatewayProcess, client: anthropic.Anthropic, fake_openai: FakeOpenAI
) -> None:
    fake_openai.faults.append({"drop_after": 2})
    raw = httpx.post(
        f"{gateway.base_url}/v1/messages",
        json={"model": "gpt-test", "max_tokens": 50, "messages": USER, "stream": True},
        headers={"x-api-key": MASTER_KEY},
    ).content
    frames = parse_sse(raw)
    names = [n for n, _ in frames]
    assert names[0] == "message_start" and names[-1] == "error" and "message_stop" not in names
    assert names.count("content_block_start") == names.count("content_block_stop")
    fake_openai.faults.append({"drop_after": 2})
    with pytest.raises(anthropic.APIStatusError) as info:
        with client.messages.stream(model="gpt-test", max_tokens=50, messages=USER) as stream:
            stream.get_final_message()
    assert info.value.body["error"]["type"] == "api_error"


def test_failover_before_the_first_byte_and_usage_records(gateway: GatewayProcess, client: anthropic.Anthropic) -> None:
    before = len(gateway.access_lines())
    with client.messages.stream(
        model="gpt-failover", max_tokens=50, messages=USER, extra_headers={"X-Claude-Code-Session-Id": "sess-42"}
    ) as stream:
        final = stream.get_final_message()
    assert final.content[0].text == "Hello from the fake upstream."
    lines = gateway.wait_for_records(before + 2)
    mine = [line for line in lines[before:] if line.get("endpoint") == "messages"]
    assert mine, lines[before:]
    served = [line for line in mine if line.get("status") == 200]
    assert served and served[-1].get("attempts") == 2 and served[-1].get("completion_tokens") == 7
    assert served[-1]["endpoint"] == "messages" and served[-1].get("session_id") == "sess-42"


def test_events_are_relayed_as_they_arrive(gateway: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    hold = threading.Event()
    fake_openai.hold_after_first = hold
    fake_openai.reply.content = "first second third"
    body = {"model": "gpt-test", "max_tokens": 50, "messages": USER, "stream": True}
    texts = []
    try:
        with httpx.stream(
            "POST", f"{gateway.base_url}/v1/messages", json=body, headers={"x-api-key": MASTER_KEY}, timeout=5
        ) as resp:
            assert resp.headers["content-type"].startswith("text/event-stream")
            for line in resp.iter_lines():
                if line.startswith("data: ") and '"text_delta"' in line:
                    texts.append(json.loads(line[6:])["delta"]["text"])
                    if texts == ["first "]:
                        # The upstream waits for this: a buffering gateway would never get here.
                        assert not hold.is_set()
                        hold.set()
    finally:
        hold.set()
    assert texts == ["first ", "second ", "third"]


def test_client_disconnect_cancels_upstream_and_records(gateway: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    fake_openai.reply.content = " ".join(f"w{i}" for i in range(200))
    fake_openai.reply.chunk_delay_s = 0.05
    before = len(gateway.access_lines())
    body = {"model": "gpt-test", "max_tokens": 50, "messages": USER, "stream": True}
    with httpx.stream("POST", f"{gateway.base_url}/v1/messages", json=body, headers={"x-api-key": MASTER_KEY}, timeout=5) as resp:
        for line in resp.iter_lines():
            if '"w1 "' in line:
                break  # leave mid-stream
    # The stream would take 10 s; the gateway must drop it as soon as it finds the client gone.
    assert fake_openai.stream_closed.wait(5), "the upstream stream was not cancelled"
    deadline = time.monotonic() + 5
    closed: list[dict[str, Any]] = []
    while not closed and time.monotonic() < deadline:
        time.sleep(0.05)
        closed = [r for r in gateway.access_lines()[before:] if r.get("endpoint") == "messages" and r.get("status") == 499]
    assert closed and closed[-1]["partial"] is True and closed[-1]["completion_tokens"] > 0


def test_pings_while_a_translated_upstream_is_silent_before_content(
    fake_openai: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # The upstream opens the stream (role chunk) then thinks for 1.5 s; with a 0.3 s interval the
    # client sees message_start, then pings, then the content.
    config = basic_config(fake_openai)
    config["server"] = {**config.get("server", {}), "sse_ping_interval_s": 0.3}
    gw = GatewayProcess(config, tmp_path_factory.mktemp("messages-ping-gw")).start()
    try:
        fake_openai.faults.append({"gap_after": 0, "gap_s": 1.5})
        body = {"model": "gpt-test", "max_tokens": 50, "messages": USER, "stream": True}
        raw = httpx.post(f"{gw.base_url}/v1/messages", json=body, headers={"x-api-key": MASTER_KEY}, timeout=30).content
    finally:
        gw.stop()
    frames = parse_sse(raw)
    names = [name for name, _ in frames]
    assert names[0] == "message_start"
    first_content = names.index("content_block_start")
    assert names[1:first_content].count("ping") >= 3, names
    assert check_and_accumulate(frames)["content"][0]["text"] == "Hello from the fake upstream."


@pytest.mark.parametrize(
    ("method", "path", "status", "etype"),
    [
        ("GET", "/v1/messages", 405, "invalid_request_error"),
        ("GET", "/v1/messages/count_tokens", 405, "invalid_request_error"),
        ("POST", "/v1/messages/batches", 404, "not_found_error"),
        ("GET", "/v1/messages/batches/msgbatch_1/results", 404, "not_found_error"),
    ],
)
def test_other_messages_paths_answer_in_anthropic_shape(
    gateway: GatewayProcess, method: str, path: str, status: int, etype: str
) -> None:
    resp = httpx.request(method, f"{gateway.base_url}{path}", headers={"x-api-key": MASTER_KEY}, json={})
    assert resp.status_code == status
    body = resp.json()
    assert body["type"] == "error" and body["error"]["type"] == etype and path in body["error"]["message"]
    assert body["request_id"] == resp.headers["request-id"]


def test_other_paths_keep_the_openai_shape(gateway: GatewayProcess) -> None:
    resp = httpx.get(f"{gateway.base_url}/v1/messagesx", headers={"x-api-key": MASTER_KEY})
    assert resp.status_code == 404 and "type" not in resp.json() and resp.json()["error"]["code"] == "not_found"
