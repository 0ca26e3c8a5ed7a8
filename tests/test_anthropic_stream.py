"""Unit tests of the stream state machine, fed recorded Anthropic SSE streams (no network)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from lockgate.errors import GatewayError, ProviderBadResponse, ProviderOverloaded
from lockgate.providers.anthropic.request import JSON_TOOL_NAME, TranslationContext
from lockgate.providers.anthropic.stream import ChunkTranslator, text_completion_chunk
from lockgate.providers.http import iter_sse
from tests.fakes.anthropic_upstream import Reply, sse_text, stream_events, text, tool_use

FIXTURES = Path(__file__).parent / "fixtures" / "anthropic"


class _Reads:
    """What iter_sse reads from: readany() in pieces that cut lines and events anywhere, b"" at the end."""

    def __init__(self, raw: bytes, size: int = 7) -> None:
        self._pieces = [raw[i : i + size] for i in range(0, len(raw), size)]

    async def readany(self) -> bytes:
        return self._pieces.pop(0) if self._pieces else b""


async def events_of(raw: str) -> list[dict[str, Any]]:
    """Parse SSE text with the gateway's own reader, checking each event name matches its type."""
    out = []
    async for name, data in iter_sse(_Reads(raw.encode())):  # type: ignore[arg-type]
        event = orjson.loads(data)
        assert name == event["type"]
        out.append(event)
    return out


async def translate(raw: str, ctx: TranslationContext | None = None) -> tuple[list[dict[str, Any]], ChunkTranslator]:
    translator = ChunkTranslator(ctx or TranslationContext(model="claude-test"), created=1)
    chunks: list[dict[str, Any]] = []
    for event in await events_of(raw):
        chunks += translator.feed(event)
    return chunks, translator


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def deltas(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c["choices"][0]["delta"] for c in chunks if c["choices"]]


def check_openai_shape(chunks: list[dict[str, Any]]) -> None:
    """Role first, one finish chunk, then exactly one usage chunk with empty choices, last."""
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1 and chunks[0]["id"]
    *body, finish, usage = chunks
    assert all(c["choices"] and c["usage"] is None and c["choices"][0]["finish_reason"] is None for c in body)
    assert finish["choices"][0]["delta"] == {} and finish["choices"][0]["finish_reason"]
    assert usage["choices"] == [] and usage["usage"]["total_tokens"] == (
        usage["usage"]["prompt_tokens"] + usage["usage"]["completion_tokens"]
    )


async def test_text_stream_with_cached_usage() -> None:
    chunks, translator = await translate(fixture("stream_text.sse"))
    check_openai_shape(chunks)
    assert [d.get("content") for d in deltas(chunks)[1:-1]] == ["Hello", "! How can I", " help you today?"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    # message_start's output_tokens (1) is a placeholder: 12, not 13.
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 12 + 100 + 2048,
        "completion_tokens": 12,
        "total_tokens": 2172,
        "prompt_tokens_details": {"cached_tokens": 2048},
    }
    assert translator.finished and translator.usage is not None
    assert (translator.usage.cached_tokens, translator.usage.cache_creation_tokens) == (2048, 100)
    assert chunks[0]["model"] == "claude-sonnet-4-5-20250929" and chunks[0]["id"] == "msg_01XFDUDYJgAACzvnptvVoYEL"


async def test_tool_use_stream_gives_indexed_tool_call_deltas() -> None:
    chunks, _ = await translate(fixture("stream_tool_use.sse"))
    check_openai_shape(chunks)
    content = "".join(d.get("content") or "" for d in deltas(chunks))
    assert content == "Okay, let me check the weather in both cities."
    calls: dict[int, dict[str, Any]] = {}
    for d in deltas(chunks):
        for call in d.get("tool_calls") or ():
            if call["index"] not in calls:
                # the first delta of a call carries id, type and name; arguments start empty
                assert call["id"] and call["type"] == "function" and call["function"]["name"] == "get_weather"
                assert call["function"]["arguments"] == ""
                calls[call["index"]] = {"id": call["id"], "arguments": ""}
            else:
                assert "id" not in call and set(call["function"]) == {"arguments"}
                calls[call["index"]]["arguments"] += call["function"]["arguments"]
    assert sorted(calls) == [0, 1]
    assert calls[0]["id"] == "toolu_01T1x1fJ34qAmk2tNTrN7Up6"
    assert json.loads(calls[0]["arguments"]) == {"location": "San Francisco, CA", "unit": "fahrenheit"}
    assert json.loads(calls[1]["arguments"]) == {"location": "Paris, France"}
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"]["prompt_tokens"] == 472 and chunks[-1]["usage"]["completion_tokens"] == 89


async def test_thinking_stream_and_restated_usage_are_not_double_counted() -> None:
    chunks, _ = await translate(fixture("stream_thinking.sse"))
    check_openai_shape(chunks)
    reasoning = "".join(d.get("reasoning_content") or "" for d in deltas(chunks))
    assert reasoning.startswith("I need to find the GCD") and reasoning.endswith("147 = 7 × 21 + 0")
    assert "".join(d.get("content") or "" for d in deltas(chunks)) == "The greatest common divisor is **21**."
    # message_delta restates input_tokens (24) with null cache fields: prompt stays 24.
    assert chunks[-1]["usage"]["prompt_tokens"] == 24 and chunks[-1]["usage"]["completion_tokens"] == 158


async def test_error_event_after_200_raises_with_partial_usage() -> None:
    translator = ChunkTranslator(TranslationContext(model="claude-test"))
    out: list[dict[str, Any]] = []
    with pytest.raises(ProviderOverloaded) as err:
        for event in await events_of(fixture("stream_error.sse")):
            out += translator.feed(event)
    assert err.value.status == 503 and err.value.retryable and err.value.message == "Overloaded"
    assert [d.get("content") for d in deltas(out)] == ["", "Once upon a time"]
    assert translator.usage is not None and translator.usage.estimated
    assert translator.usage.prompt_tokens == 30 and translator.usage.completion_tokens == 4


@pytest.mark.parametrize(
    "etype, status, retryable",
    [
        ("invalid_request_error", 400, False),
        ("authentication_error", 401, False),
        ("permission_error", 403, False),
        ("not_found_error", 404, False),
        ("request_too_large", 413, False),
        ("rate_limit_error", 429, True),
        ("api_error", 502, True),
        ("overloaded_error", 503, True),
        ("mystery_error", 502, True),
    ],
)
def test_error_event_types_map_to_statuses(etype: str, status: int, retryable: bool) -> None:
    translator = ChunkTranslator(TranslationContext(model="m"))
    with pytest.raises(GatewayError) as err:
        translator.feed({"type": "error", "error": {"type": etype, "message": "boom"}})
    assert (err.value.status, err.value.retryable) == (status, retryable)


async def test_stream_cut_before_message_stop_is_not_finished() -> None:
    raw = fixture("stream_text.sse").split("event: message_delta")[0]
    chunks, translator = await translate(raw)
    assert not translator.finished and all(c["choices"] for c in chunks)
    assert isinstance(translator.broken_off(), ProviderBadResponse)
    assert translator.usage is not None and translator.usage.estimated


async def test_events_before_message_start_are_a_bad_response() -> None:
    translator = ChunkTranslator(TranslationContext(model="m"))
    assert translator.feed({"type": "ping"}) == []
    with pytest.raises(ProviderBadResponse):
        translator.feed({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "x"}})


async def test_forced_json_tool_streams_as_content() -> None:
    reply = Reply(content=[tool_use("toolu_9", JSON_TOOL_NAME, {"answer": 42, "items": ["a", "b"]})], stop_reason="tool_use")
    raw = sse_text(stream_events(reply, "claude-test"))
    chunks, _ = await translate(raw, TranslationContext(model="m", json_tool=JSON_TOOL_NAME))
    check_openai_shape(chunks)
    assert not any("tool_calls" in d for d in deltas(chunks))
    assert len([d for d in deltas(chunks) if d.get("content")]) > 1  # as it is written, not at the end
    assert json.loads("".join(d.get("content") or "" for d in deltas(chunks))) == {"answer": 42, "items": ["a", "b"]}
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    # a wrapped (non-object) schema is unwrapped at block stop
    reply.content = [tool_use("toolu_9", JSON_TOOL_NAME, {"value": [1, 2, 3]})]
    chunks, _ = await translate(
        sse_text(stream_events(reply, "m")), TranslationContext(model="m", json_tool=JSON_TOOL_NAME, json_wrapped=True)
    )
    assert json.loads("".join(d.get("content") or "" for d in deltas(chunks))) == [1, 2, 3]


async def test_text_then_real_tool_with_json_mode_reports_tool_calls() -> None:
    reply = Reply(content=[text("Calling."), tool_use("toolu_1", "f", {"x": 1})], stop_reason="tool_use")
    chunks, _ = await translate(sse_text(stream_events(reply, "m")), TranslationContext(model="m", json_tool=JSON_TOOL_NAME))
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"


async def test_legacy_completion_chunks() -> None:
    chunks, _ = await translate(fixture("stream_text.sse"))
    legacy = [c for c in map(text_completion_chunk, chunks) if c is not None]
    assert all(c["object"] == "text_completion" for c in legacy)
    assert [c["choices"][0]["text"] for c in legacy[:-1]] == ["Hello", "! How can I", " help you today?", ""]
    assert legacy[-2]["choices"][0]["finish_reason"] == "stop"
    assert legacy[-1]["choices"] == [] and legacy[-1]["usage"] == {
        "prompt_tokens": 2160,
        "completion_tokens": 12,
        "total_tokens": 2172,
    }


async def test_tool_call_without_input_fragments_ends_as_empty_object() -> None:
    translator = ChunkTranslator(TranslationContext(model="m"))
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": {"id": "msg_1", "model": "m", "usage": {"input_tokens": 3, "output_tokens": 1}}},
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "tool_use", "id": "toolu_1", "name": "now", "input": {}},
        },
        {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": ""}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 4}},
        {"type": "message_stop"},
    ]
    chunks = [c for e in events for c in translator.feed(e)]
    arguments = "".join(call["function"].get("arguments", "") for d in deltas(chunks) for call in d.get("tool_calls") or ())
    assert json.loads(arguments) == {}
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
