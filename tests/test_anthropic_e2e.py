"""End to end: the official `openai` client -> `lockgate serve` -> the fake Anthropic Messages API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from lockgate.providers.anthropic.request import JSON_TOOL_NAME
from tests.fakes.anthropic_upstream import UPSTREAM_KEY, FakeAnthropic, Reply, text, thinking, tool_use
from tests.harness import MASTER_KEY, GatewayProcess

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def gateway(fake_server: FakeAnthropic, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    deployment = {
        "provider": "anthropic",
        "model": "claude-upstream-1",
        "api_base": fake_server.url,
        "api_key": UPSTREAM_KEY,
        "max_tokens_default": 512,
        "first_byte_timeout_s": 5,
    }
    config = {
        "auth": {"master_key": MASTER_KEY},
        "models": [
            {"name": "claude-test", "deployments": [deployment]},
            # A 429 cools its deployment down for retry-after seconds: that test gets its own.
            {"name": "claude-ratelimited", "deployments": [deployment]},
        ],
        # One attempt and no cool-down, so each injected fault is seen exactly once by the client.
        "router": {"max_attempts": 1, "cooldown": {"failures": 1000}},
    }
    gw = GatewayProcess(config, tmp_path_factory.mktemp("anthropic-gw")).start()
    yield gw
    gw.stop()


@pytest.fixture
def fake(fake_server: FakeAnthropic) -> Iterator[FakeAnthropic]:
    fake_server.reset()
    yield fake_server
    fake_server.reset()


@pytest.fixture
def client(gateway: GatewayProcess, fake: FakeAnthropic) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url, api_key=MASTER_KEY, max_retries=0, timeout=20)


def hi(**params: Any) -> dict[str, Any]:
    return {"model": "claude-test", "messages": [{"role": "user", "content": "Hi"}], **params}


# --- text ---------------------------------------------------------------------------------------


def test_text(client: openai.OpenAI, fake: FakeAnthropic, gateway: GatewayProcess) -> None:
    raw = client.chat.completions.with_raw_response.create(**hi(max_tokens=64))
    completion = raw.parse()
    assert completion.choices[0].message.content == "Hello from the fake Anthropic upstream."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "claude-test"
    assert completion.usage is not None and (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (21, 9)
    assert fake.last["model"] == "claude-upstream-1" and fake.last["max_tokens"] == 64
    assert not any(k.lower().startswith("anthropic-ratelimit") for k in raw.headers)
    line = gateway.access_line(raw.headers["x-request-id"])
    assert (line["status"], line["prompt_tokens"], line["completion_tokens"]) == (200, 21, 9)


def test_system_prompts(client: openai.OpenAI, fake: FakeAnthropic) -> None:
    client.chat.completions.create(
        model="claude-test",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": "Use English."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Bye"},
        ],
    )
    assert fake.last["system"] == [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Use English."}]
    assert [m["role"] for m in fake.last["messages"]] == ["user", "assistant", "user"]
    assert fake.last["max_tokens"] == 512  # the deployment's max_tokens_default


def test_stream(client: openai.OpenAI, fake: FakeAnthropic) -> None:
    fake.reply = Reply(content=[text("Streaming works through the gateway.")])
    chunks = list(client.chat.completions.create(**hi(stream=True)))
    assert fake.last["stream"] is True
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Streaming works through the gateway."
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 3  # relayed piece by piece
    assert chunks[-1].choices[0].finish_reason == "stop"
    # without stream_options.include_usage: no usage chunk, no empty choices
    assert all(c.choices and c.usage is None for c in chunks)


def test_usage_and_cached_tokens(client: openai.OpenAI, fake: FakeAnthropic, gateway: GatewayProcess) -> None:
    fake.reply = Reply(
        input_tokens=10,
        cache_read_input_tokens=3000,
        cache_creation_input_tokens=200,
        output_tokens=15,
        restate_usage_in_delta=True,
    )
    raw = client.chat.completions.with_raw_response.create(**hi())
    usage = raw.parse().usage
    assert usage is not None and usage.prompt_tokens == 3210 and usage.completion_tokens == 15 and usage.total_tokens == 3225
    assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens == 3000
    line = gateway.access_line(raw.headers["x-request-id"])
    assert (line["cached_tokens"], line["cache_creation_tokens"], line["prompt_tokens"]) == (3000, 200, 3210)

    raw_stream = client.chat.completions.with_raw_response.create(**hi(stream=True, stream_options={"include_usage": True}))
    chunks = list(raw_stream.parse())
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (3210, 15)  # message_start's placeholder not added
    assert last.usage.prompt_tokens_details is not None and last.usage.prompt_tokens_details.cached_tokens == 3000
    assert all(c.usage is None for c in chunks[:-1])
    line = gateway.access_line(raw_stream.headers["x-request-id"])
    assert (line["status"], line["cached_tokens"], line["cache_creation_tokens"], line["completion_tokens"]) == (
        200,
        3000,
        200,
        15,
    )


# --- tools --------------------------------------------------------------------------------------


def test_tools(client: openai.OpenAI, fake: FakeAnthropic) -> None:
    fake.reply = Reply(
        content=[text("Let me look."), tool_use("toolu_01W", "get_weather", {"city": "Paris, France"})], stop_reason="tool_use"
    )
    completion = client.chat.completions.create(**hi(tools=[WEATHER], tool_choice="required"))
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]  # type: ignore[index]
    assert call.id == "toolu_01W" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris, France"}
    assert fake.last["tool_choice"] == {"type": "any"}
    assert fake.last["tools"][0]["input_schema"] == WEATHER["function"]["parameters"]

    # the client sends the call and its result back; the fake enforces Anthropic's pairing rules
    fake.reply = Reply(content=[text("It is sunny in Paris.")])
    answer = client.chat.completions.create(
        model="claude-test",
        tools=[WEATHER],  # type: ignore[list-item]
        messages=[
            {"role": "user", "content": "Hi"},
            choice.message.model_dump(exclude_none=True),  # type: ignore[list-item]
            {"role": "tool", "tool_call_id": "toolu_01W", "content": "sunny, 24C"},
        ],
    )
    assert answer.choices[0].message.content == "It is sunny in Paris."
    assert fake.last["messages"][2]["content"] == [{"type": "tool_result", "tool_use_id": "toolu_01W", "content": "sunny, 24C"}]


def test_tools_stream(client: openai.OpenAI, fake: FakeAnthropic) -> None:
    fake.reply = Reply(
        content=[
            tool_use("toolu_A", "get_weather", {"city": "San Francisco, CA"}),
            tool_use("toolu_B", "get_weather", {"city": "Tōkyō"}),
        ],
        stop_reason="tool_use",
        json_piece=5,
    )
    calls: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in client.chat.completions.create(**hi(tools=[WEATHER], stream=True)):
        if not chunk.choices:
            continue
        finish = chunk.choices[0].finish_reason or finish
        for tc in chunk.choices[0].delta.tool_calls or ():
            entry = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
            entry["id"] += tc.id or ""
            entry["name"] += (tc.function.name if tc.function else None) or ""
            entry["arguments"] += (tc.function.arguments if tc.function else None) or ""
    assert finish == "tool_calls"
    assert calls[0]["id"] == "toolu_A" and calls[1]["id"] == "toolu_B"
    assert calls[0]["name"] == calls[1]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"]) == {"city": "San Francisco, CA"}
    assert json.loads(calls[1]["arguments"]) == {"city": "Tōkyō"}


def test_thinking_and_json_response_format(client: openai.OpenAI, fake: FakeAnthropic) -> None:
    fake.reply = Reply(content=[thinking("Adding."), text("4")])
    completion = client.chat.completions.create(**hi(reasoning_effort="low"))
    assert completion.choices[0].message.content == "4"
    assert completion.choices[0].message.model_extra["reasoning_content"] == "Adding."  # type: ignore[index]
    assert fake.last["thinking"] == {"type": "enabled", "budget_tokens": 2048}

    fake.reply = Reply(content=[tool_use("toolu_J", JSON_TOOL_NAME, {"sum": 4})], stop_reason="tool_use")
    schema = {"type": "object", "properties": {"sum": {"type": "integer"}}, "required": ["sum"]}
    completion = client.chat.completions.create(
        **hi(response_format={"type": "json_schema", "json_schema": {"name": "sum", "schema": schema}})
    )
    assert json.loads(completion.choices[0].message.content or "") == {"sum": 4}
    assert completion.choices[0].finish_reason == "stop" and not completion.choices[0].message.tool_calls


# --- images -------------------------------------------------------------------------------------


def test_images(client: openai.OpenAI, fake: FakeAnthropic) -> None:
    client.chat.completions.create(
        model="claude-test",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in these?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                ],
            }
        ],
    )
    blocks = fake.last["messages"][0]["content"]
    assert blocks[1] == {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    assert blocks[2] == {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status, etype, exc, client_status",
    [
        (400, "invalid_request_error", openai.BadRequestError, 400),
        (401, "authentication_error", openai.AuthenticationError, 401),
        (403, "permission_error", openai.PermissionDeniedError, 403),
        (404, "not_found_error", openai.NotFoundError, 404),
        (413, "request_too_large", openai.APIStatusError, 413),
        (429, "rate_limit_error", openai.RateLimitError, 429),
        (500, "api_error", openai.InternalServerError, 502),
        (529, "overloaded_error", openai.InternalServerError, 503),
    ],
)
def test_error_mapping(
    client: openai.OpenAI,
    fake: FakeAnthropic,
    gateway: GatewayProcess,
    status: int,
    etype: str,
    exc: type[openai.APIStatusError],
    client_status: int,
) -> None:
    fake.faults.append({"status": status, "type": etype, "message": f"Anthropic says {etype}", "headers": {"retry-after": "3"}})
    model = "claude-ratelimited" if status == 429 else "claude-test"
    with pytest.raises(exc) as err:
        client.chat.completions.create(**hi(model=model))
    response = err.value.response
    assert response.status_code == client_status
    error = response.json()["error"]
    assert error["message"] == f"Anthropic says {etype}"
    assert not any(k.lower().startswith("anthropic-") for k in response.headers)
    if client_status in (429, 503):
        assert response.headers.get("retry-after") == "3"
    line = gateway.access_line(response.headers["x-request-id"])
    assert line["status"] == client_status


def test_unhonourable_param_is_a_400_naming_it(client: openai.OpenAI, fake: FakeAnthropic) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(**hi(n=2))
    assert err.value.param == "n" and "`n`" in err.value.message
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(**hi(logprobs=True))
    assert err.value.param == "logprobs"
    assert fake.requests == []


def test_error_event_mid_stream(client: openai.OpenAI, fake: FakeAnthropic, gateway: GatewayProcess) -> None:
    fake.faults.append({"error_event_after": 3, "type": "overloaded_error", "message": "Overloaded"})
    raw = client.chat.completions.with_raw_response.create(**hi(stream=True))
    received: list[Any] = []
    with pytest.raises(openai.APIError) as err:
        for chunk in raw.parse():
            received.append(chunk)
    assert "Overloaded" in str(err.value)
    assert "".join(c.choices[0].delta.content or "" for c in received if c.choices) == "Hello from the fak"
    line = gateway.access_line(raw.headers["x-request-id"])
    assert line["status"] == 503 and line["partial"] is True and line["error_type"] == "provider_overloaded"
    assert line["prompt_tokens"] == 21  # input tokens from message_start are still recorded


def test_upstream_refusal_of_a_bad_request_passes_through(client: openai.OpenAI, fake: FakeAnthropic) -> None:
    # A conversation starting with the assistant: the fake, like Anthropic's older rule, refuses it.
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="claude-test", messages=[{"role": "assistant", "content": "Hi"}])
    assert "first message" in err.value.message


def test_embeddings_are_refused(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(model="claude-test", input="hello")
    assert "embeddings" in err.value.message


# --- legacy completions ---------------------------------------------------------------------------


def test_legacy_completions(client: openai.OpenAI, fake: FakeAnthropic) -> None:
    completion = client.completions.create(model="claude-test", prompt="Say hello", max_tokens=30)
    assert completion.object == "text_completion"
    assert completion.choices[0].text == "Hello from the fake Anthropic upstream."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.total_tokens == 30
    assert fake.last["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Say hello"}]}]

    chunks = list(
        client.completions.create(model="claude-test", prompt="Say hello", stream=True, stream_options={"include_usage": True})
    )
    assert all(c.object == "text_completion" for c in chunks)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "Hello from the fake Anthropic upstream."
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 9


def test_raw_sse_is_valid_openai_wire(gateway: GatewayProcess, fake: FakeAnthropic) -> None:
    # Byte-level check of what a non-SDK client sees: data lines, then [DONE].
    with httpx.stream(
        "POST",
        f"{gateway.url}/chat/completions",
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        json=hi(stream=True),
        timeout=20,
    ) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in resp.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    payloads = [json.loads(line[6:]) for line in lines[:-1]]
    assert all(p["object"] == "chat.completion.chunk" and p["model"] == "claude-test" for p in payloads)
    assert all("usage" not in p for p in payloads)
