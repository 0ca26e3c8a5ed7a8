"""The Anthropic provider over real HTTP against the fake Messages API (no gateway process)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from lockgate.config import AnthropicDeployment
from lockgate.errors import (
    GatewayError,
    InvalidRequest,
    ProviderBadResponse,
    ProviderOverloaded,
    ProviderRateLimited,
    ProviderServerError,
    ProviderTimeout,
    ProviderUnavailable,
)
from lockgate.providers import build_provider
from lockgate.providers.anthropic import AnthropicProvider
from lockgate.providers.http import HttpPool
from tests.fakes.anthropic_upstream import UPSTREAM_KEY, FakeAnthropic, Reply, text, thinking, tool_use
from tests.harness import free_port


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


@pytest.fixture
async def make() -> AsyncIterator[Any]:
    pool = HttpPool()

    def build(fake: FakeAnthropic | None = None, **extra: Any) -> AnthropicProvider:
        fields: dict[str, Any] = {"provider": "anthropic", "model": "claude-test", "api_key": UPSTREAM_KEY}
        if fake is not None:
            fields["api_base"] = fake.url
        dep = AnthropicDeployment(**{**fields, **extra})
        provider = build_provider(dep, pool.session_for(dep))
        assert isinstance(provider, AnthropicProvider)
        return provider

    yield build
    await pool.aclose()


def body(**params: Any) -> dict[str, Any]:
    return {"model": "claude-test", "messages": [{"role": "user", "content": "Hi"}], **params}


async def collect(stream: Any) -> list[dict[str, Any]]:
    out = []
    try:
        async for chunk in stream:
            out.append(chunk)
    finally:
        await stream.aclose()
    return out


async def test_headers_path_and_body(fake: FakeAnthropic, make: Any) -> None:
    provider = make(fake, anthropic_beta="prompt-caching-2024-07-31", headers={"x-extra": "1"}, max_tokens_default=321)
    result = await provider.chat(body())
    seen = fake.requests[-1]
    assert seen.path == "/v1/messages"
    assert seen.headers["x-api-key"] == UPSTREAM_KEY
    assert seen.headers["anthropic-version"] == "2023-06-01"
    assert seen.headers["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert seen.headers["x-extra"] == "1"
    assert "Authorization" not in seen.headers
    assert seen.body["max_tokens"] == 321 and "stream" not in seen.body
    assert result.body["choices"][0]["message"]["content"] == "Hello from the fake Anthropic upstream."
    assert result.usage is not None and (result.usage.prompt_tokens, result.usage.completion_tokens) == (21, 9)
    # Anthropic's rate-limit headers are not passed on raw
    assert not any(k.lower().startswith("anthropic-") for k in result.headers)


async def test_api_base_with_v1_suffix(fake: FakeAnthropic, make: Any) -> None:
    provider = make(api_base=fake.url + "/v1/")
    await provider.chat(body())
    assert fake.requests[-1].path == "/v1/messages"


async def test_stream_text_with_usage(fake: FakeAnthropic, make: Any) -> None:
    fake.reply = Reply(
        content=[text("The quick brown fox.")],
        input_tokens=11,
        cache_read_input_tokens=40,
        cache_creation_input_tokens=5,
        output_tokens=6,
        restate_usage_in_delta=True,
    )
    stream = await make(fake).chat_stream(body(stream=True))
    chunks = await collect(stream)
    assert fake.last["stream"] is True
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == "The quick brown fox."
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["prompt_tokens"] == 56
    assert chunks[-1]["usage"]["prompt_tokens_details"] == {"cached_tokens": 40}
    assert stream.usage is not None and stream.usage.completion_tokens == 6 and stream.usage.cache_creation_tokens == 5


async def test_tools_round_trip(fake: FakeAnthropic, make: Any) -> None:
    fake.reply = Reply(
        content=[
            thinking("Weather needs a tool."),
            text("Checking."),
            tool_use("toolu_1", "get_weather", {"city": "Paris", "days": [1, 2]}),
        ],
        stop_reason="tool_use",
    )
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    result = await make(fake).chat(body(tools=tools))
    message = result.body["choices"][0]["message"]
    assert result.body["choices"][0]["finish_reason"] == "tool_calls"
    assert message["reasoning_content"] == "Weather needs a tool." and message["content"] == "Checking."
    assert json.loads(message["tool_calls"][0]["function"]["arguments"]) == {"city": "Paris", "days": [1, 2]}
    # send the call and its result back: the fake checks tool_use/tool_result pairing
    follow = body(tools=tools)
    follow["messages"] += [message, {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"}]
    fake.reply = Reply()
    await make(fake).chat(follow)
    sent = fake.last["messages"]
    assert sent[1]["content"][-1] == {
        "type": "tool_use",
        "id": "toolu_1",
        "name": "get_weather",
        "input": {"city": "Paris", "days": [1, 2]},
    }
    assert sent[2] == {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]}


@pytest.mark.parametrize(
    "status, etype, cls, expect_status, retryable",
    [
        (400, "invalid_request_error", GatewayError, 400, False),
        (401, "authentication_error", GatewayError, 401, False),
        (403, "permission_error", GatewayError, 403, False),
        (404, "not_found_error", GatewayError, 404, False),
        (413, "request_too_large", GatewayError, 413, False),
        (429, "rate_limit_error", ProviderRateLimited, 429, True),
        (500, "api_error", ProviderServerError, 502, True),
        (529, "overloaded_error", ProviderOverloaded, 503, True),
        (500, "overloaded_error", ProviderOverloaded, 503, True),  # mapped by type, not status
    ],
)
async def test_error_mapping(
    fake: FakeAnthropic, make: Any, status: int, etype: str, cls: type[GatewayError], expect_status: int, retryable: bool
) -> None:
    fake.faults.append({"status": status, "type": etype, "message": f"upstream says {etype}", "headers": {"retry-after": "7"}})
    with pytest.raises(cls) as err:
        await make(fake).chat(body())
    assert (err.value.status, err.value.retryable) == (expect_status, retryable)
    assert err.value.message == f"upstream says {etype}"
    assert not any(k.startswith("anthropic-") for k in err.value.headers)
    if status == 429:
        assert err.value.retry_after_s == 7


async def test_stream_errors_before_the_first_byte(fake: FakeAnthropic, make: Any) -> None:
    fake.faults.append({"status": 529, "type": "overloaded_error"})
    with pytest.raises(ProviderOverloaded):
        await make(fake).chat_stream(body(stream=True))


async def test_error_event_mid_stream(fake: FakeAnthropic, make: Any) -> None:
    fake.faults.append({"error_event_after": 2, "type": "overloaded_error"})
    stream = await make(fake).chat_stream(body(stream=True))
    got: list[dict[str, Any]] = []
    with pytest.raises(ProviderOverloaded):
        async for chunk in stream:
            got.append(chunk)
    await stream.aclose()
    assert [c["choices"][0]["delta"].get("content") for c in got] == ["", "Hello ", "from t"]
    assert stream.usage is not None and stream.usage.estimated and stream.usage.prompt_tokens == 21


async def test_dropped_stream_is_a_bad_response(fake: FakeAnthropic, make: Any) -> None:
    fake.faults.append({"drop_after": 2})
    stream = await make(fake).chat_stream(body(stream=True))
    with pytest.raises((ProviderBadResponse, ProviderUnavailable)):
        await collect(stream)


async def test_not_json_and_timeouts_and_unreachable(fake: FakeAnthropic, make: Any) -> None:
    fake.faults.append({"not_json": True})
    with pytest.raises(ProviderBadResponse):
        await make(fake).chat(body())
    fake.faults.append({"not_json": True})
    with pytest.raises(ProviderBadResponse):
        await make(fake).chat_stream(body(stream=True))
    fake.faults.append({"hang_s": 2})
    with pytest.raises(ProviderTimeout):
        await make(fake, timeout_s=0.3).chat(body())
    with pytest.raises(ProviderUnavailable):
        await make(api_base=f"http://127.0.0.1:{free_port()}").chat(body())


async def test_invalid_requests_never_reach_the_upstream(fake: FakeAnthropic, make: Any) -> None:
    with pytest.raises(InvalidRequest) as err:
        await make(fake).chat(body(n=3))
    assert err.value.param == "n" and fake.requests == []
    with pytest.raises(InvalidRequest):
        await make(fake).embeddings({"model": "claude-test", "input": "x"})


async def test_legacy_completions(fake: FakeAnthropic, make: Any) -> None:
    result = await make(fake).completions({"model": "claude-test", "prompt": "Say hi", "max_tokens": 20})
    assert fake.last["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Say hi"}]}]
    assert fake.last["max_tokens"] == 20
    assert result.body["object"] == "text_completion"
    assert result.body["choices"][0]["text"] == "Hello from the fake Anthropic upstream."
    chunks = await collect(await make(fake).completions_stream({"model": "claude-test", "prompt": "Say hi", "stream": True}))
    assert all(c["object"] == "text_completion" for c in chunks)
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == "Hello from the fake Anthropic upstream."
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["usage"]["completion_tokens"] == 9


async def test_finished_streams_leave_the_connection_reusable(fake: FakeAnthropic, make: Any) -> None:
    provider = make(fake)
    for _ in range(3):
        await collect(await provider.chat_stream(body(stream=True)))
    await provider.chat(body())
    ports = {seen.client_port for seen in fake.requests}
    assert len(fake.requests) == 4 and len(ports) == 1


async def test_a_body_held_open_after_message_stop_is_read_to_its_end(fake: FakeAnthropic, make: Any) -> None:
    # The upstream ends its body a moment after message_stop: the last chunk must not wait for it,
    # and the connection must still go back to the pool with the upstream's response completed.
    fake.reply.eof_delay_s = 0.3
    provider = make(fake)
    for _ in range(3):
        stream = await provider.chat_stream(body(stream=True))
        started = time.monotonic()
        await collect(stream)
        await stream.aclose()
        assert time.monotonic() - started < 0.3
        await asyncio.sleep(0.4)  # the background drain finishes
    ports = {seen.client_port for seen in fake.requests}
    assert len(ports) == 1 and fake.completed == 3
