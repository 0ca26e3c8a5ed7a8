"""End to end: the `anthropic` SDK -> `lockgate serve` /v1/messages -> the fake Anthropic API (pass-through)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from tests.fakes.anthropic_upstream import UPSTREAM_KEY, FakeAnthropic, text, thinking, tool_use
from tests.harness import MASTER_KEY, GatewayProcess
from tests.messages_support import check_and_accumulate, parse_sse

USER = [{"role": "user", "content": "Hello"}]
WEATHER = {"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake(fake_server: FakeAnthropic) -> Iterator[FakeAnthropic]:
    fake_server.reset()
    yield fake_server
    fake_server.reset()


@pytest.fixture(scope="module")
def gateway(fake_server: FakeAnthropic, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    deployment = {
        "provider": "anthropic",
        "model": "claude-upstream-1",
        "api_base": fake_server.url,
        "api_key": UPSTREAM_KEY,
        "first_byte_timeout_s": 5,
    }
    config = {
        "auth": {"master_key": MASTER_KEY},
        "models": [
            {"name": "claude-sonnet-4-6", "deployments": [deployment]},
            {"name": "claude-limited", "deployments": [deployment]},
        ],
        "router": {"max_attempts": 1, "cooldown": {"failures": 1000}},
    }
    gw = GatewayProcess(config, tmp_path_factory.mktemp("messages-native-gw")).start()
    yield gw
    gw.stop()


@pytest.fixture
def client(gateway: GatewayProcess, fake: FakeAnthropic) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0)


def test_body_goes_upstream_as_sent_with_the_model_rewritten(client: anthropic.Anthropic, fake: FakeAnthropic) -> None:
    system = [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    fake.reply.cache_read_input_tokens = 50
    message = client.beta.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=64,
        system=system,
        messages=USER,
        betas=["context-management-2025-06-27"],
        extra_body={"top_k": 3, "context_management": {"edits": [{"type": "clear_thinking_20251015"}]}},
    )
    assert message.model == "claude-sonnet-4-6" and message.content[0].text == "Hello from the fake Anthropic upstream."
    assert message.usage.cache_read_input_tokens == 50 and message.usage.input_tokens == 21
    seen = fake.requests[-1]
    assert seen.body == {
        "model": "claude-upstream-1",
        "max_tokens": 64,
        "system": system,
        "messages": USER,
        "top_k": 3,
        "context_management": {"edits": [{"type": "clear_thinking_20251015"}]},
    }
    assert seen.headers["anthropic-beta"] == "context-management-2025-06-27"
    assert seen.headers["x-api-key"] == UPSTREAM_KEY  # the gateway's credential, never the client's


def test_stream_relays_thinking_with_signature_and_tools(
    client: anthropic.Anthropic, gateway: GatewayProcess, fake: FakeAnthropic
) -> None:
    fake.reply.content = [
        thinking("Let me see.", "sig-upstream-42"),
        text("Calling."),
        tool_use("toolu_1", "get_weather", {"city": "Oslo"}),
    ]
    fake.reply.stop_reason = "tool_use"
    think = {"type": "enabled", "budget_tokens": 1024}
    with client.messages.stream(
        model="claude-sonnet-4-6", max_tokens=2048, messages=USER, tools=[WEATHER], thinking=think
    ) as stream:
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text", "tool_use"]
    assert final.content[0].signature == "sig-upstream-42" and final.content[2].input == {"city": "Oslo"}
    assert final.stop_reason == "tool_use" and final.usage.output_tokens == 9 and final.model == "claude-sonnet-4-6"
    # The thinking block goes back byte for byte on the next turn (Anthropic rejects modified ones).
    replay = [b.model_dump(exclude_none=True, exclude={"citations", "parsed_output"}) for b in final.content]
    client.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=2048,
        thinking=think,
        tools=[WEATHER],
        messages=[
            *USER,
            {"role": "assistant", "content": replay},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]},
        ],
    )
    assert fake.requests[-1].body["messages"][1]["content"][0] == {
        "type": "thinking",
        "thinking": "Let me see.",
        "signature": "sig-upstream-42",
    }
    raw = httpx.post(
        f"{gateway.base_url}/v1/messages",
        json={"model": "claude-sonnet-4-6", "max_tokens": 50, "messages": USER, "stream": True},
        headers={"x-api-key": MASTER_KEY},
    ).content
    check_and_accumulate(parse_sse(raw))


def test_usage_recorded_from_message_start_and_delta(
    client: anthropic.Anthropic, gateway: GatewayProcess, fake: FakeAnthropic
) -> None:
    fake.reply.cache_creation_input_tokens = 30
    before = len(gateway.access_lines())
    with client.messages.stream(model="claude-sonnet-4-6", max_tokens=50, messages=USER) as stream:
        stream.get_final_message()
    lines = gateway.wait_for_records(before + 1)
    record = [r for r in lines[before:] if r.get("endpoint") == "messages"][-1]
    # OpenAI meaning in the record: prompt = input + cache writes; the placeholder output_tokens=1 not added.
    assert record["prompt_tokens"] == 51 and record["completion_tokens"] == 9 and record["status"] == 200


def test_stream_connection_reused(client: anthropic.Anthropic, fake: FakeAnthropic) -> None:
    fake.reply.eof_delay_s = 0.2
    for _ in range(3):
        with client.messages.stream(model="claude-sonnet-4-6", max_tokens=50, messages=USER) as stream:
            stream.get_final_message()
    ports = {seen.client_port for seen in fake.requests}
    assert len(ports) == 1, ports  # the body was read to its end, so the connection went back to the pool
    assert fake.completed == 3


@pytest.mark.parametrize(
    ("fault", "error", "etype"),
    [
        ({"status": 529, "type": "overloaded_error", "message": "Overloaded"}, anthropic.APIStatusError, "overloaded_error"),
        (
            {"status": 429, "type": "rate_limit_error", "headers": {"retry-after": "1"}},
            anthropic.RateLimitError,
            "rate_limit_error",
        ),
        (
            {"status": 400, "type": "invalid_request_error", "message": "prompt is too long: 209375 tokens > 200000 maximum"},
            anthropic.BadRequestError,
            "invalid_request_error",
        ),
    ],
)
def test_upstream_errors_keep_their_type_and_wording(
    client: anthropic.Anthropic, fake: FakeAnthropic, fault: dict[str, Any], error: type, etype: str
) -> None:
    fake.faults.append(fault)
    model = "claude-limited" if fault["status"] == 429 else "claude-sonnet-4-6"
    with pytest.raises(error) as info:
        client.messages.create(model=model, max_tokens=5, messages=USER)
    assert info.value.status_code == fault["status"]
    assert info.value.body["error"]["type"] == etype
    if "message" in fault:
        assert info.value.body["error"]["message"] == fault["message"]


def test_error_event_mid_stream_is_relayed(client: anthropic.Anthropic, fake: FakeAnthropic) -> None:
    fake.faults.append({"error_event_after": 1, "type": "overloaded_error"})
    with pytest.raises(anthropic.APIStatusError) as info:
        with client.messages.stream(model="claude-sonnet-4-6", max_tokens=50, messages=USER) as stream:
            stream.get_final_message()
    assert info.value.body["error"]["type"] == "overloaded_error"
    fake.faults.append({"drop_after": 1})
    with pytest.raises(anthropic.APIStatusError) as info:
        with client.messages.stream(model="claude-sonnet-4-6", max_tokens=50, messages=USER) as stream:
            stream.get_final_message()
    assert info.value.body["error"]["type"] == "api_error"


def test_count_tokens_is_the_upstreams_own(client: anthropic.Anthropic, fake: FakeAnthropic) -> None:
    system = "A system prompt."
    counted = client.beta.messages.count_tokens(model="claude-sonnet-4-6", messages=USER, system=system, tools=[WEATHER])
    seen = fake.requests[-1]
    assert seen.path == "/v1/messages/count_tokens" and seen.body["model"] == "claude-upstream-1"
    import orjson

    assert counted.input_tokens == len(orjson.dumps([USER, system, [WEATHER]])) // 3 + 7


def test_models_list_in_anthropic_shape(client: anthropic.Anthropic) -> None:
    page = client.models.list()
    ids = [m.id for m in page.data]
    assert ids == ["claude-sonnet-4-6", "claude-limited"] and page.data[0].type == "model"
    assert page.has_more is False and page.first_id == "claude-sonnet-4-6"


def test_unsigned_thinking_from_another_deployment_is_dropped_not_rejected(
    client: anthropic.Anthropic, fake: FakeAnthropic
) -> None:
    # An OpenAI-protocol deployment's reasoning came back as thinking with an empty signature.
    history = [
        *USER,
        {
            "role": "assistant",
            "content": [{"type": "thinking", "thinking": "foreign", "signature": ""}, {"type": "text", "text": "Hi."}],
        },
        {"role": "user", "content": "And?"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "signed", "signature": "sig-upstream-1"},
                {"type": "text", "text": "So."},
            ],
        },
        {"role": "user", "content": "Go on"},
    ]
    message = client.messages.create(model="claude-sonnet-4-6", max_tokens=50, messages=history)
    assert message.content[0].text
    sent = fake.requests[-1].body["messages"]
    assert sent[1]["content"] == [{"type": "text", "text": "Hi."}]
    assert sent[3]["content"][0] == {"type": "thinking", "thinking": "signed", "signature": "sig-upstream-1"}


def test_anthropic_only_blocks_pass_through_but_are_refused_for_translation(
    client: anthropic.Anthropic, fake: FakeAnthropic, gateway: GatewayProcess
) -> None:
    # A server tool has no chat equivalent: fine for the Anthropic deployment, which gets it as sent.
    web_search = {"type": "web_search_20250305", "name": "web_search", "max_uses": 2}
    message = client.messages.create(model="claude-sonnet-4-6", max_tokens=50, messages=USER, tools=[web_search])
    assert message.content[0].text and fake.requests[-1].body["tools"] == [web_search]
    # Bad input is still a 400 in Anthropic's shape, from whoever judges it.
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(model="claude-sonnet-4-6", max_tokens=50, messages=[{"role": "user", "content": ""}])
