"""Pure translation of the Messages ingress, with recorded fixtures: request, response, stream, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from lockgate.errors import (
    AuthenticationFailed,
    BudgetExceeded,
    GatewayInternal,
    InvalidRequest,
    ModelNotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    from_upstream_status,
)
from lockgate.errors_anthropic import render_error
from lockgate.ingress.messages.request import to_chat
from lockgate.ingress.messages.response import to_message
from lockgate.ingress.messages.stream import MessagesStreamEncoder
from lockgate.providers.base import Usage
from tests.messages_support import check_and_accumulate, parse_sse

FIXTURES = Path(__file__).parent / "fixtures" / "messages"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def chunks(name: str) -> list[dict[str, Any]]:
    out = []
    for line in (FIXTURES / name).read_text().splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            out.append(json.loads(line[6:]))
    return out


def encode(name: str, model: str = "claude-test") -> bytes:
    encoder = MessagesStreamEncoder(model, input_tokens=3)
    return encoder.start() + b"".join(encoder.feed(c) for c in chunks(name)) + encoder.finish()


# --- request -------------------------------------------------------------------------------------


def test_agent_turn_translates_to_the_recorded_chat_request() -> None:
    assert to_chat(load("request_agent_turn.json")) == load("request_agent_turn.chat.json")


def test_minimal_request_and_string_content() -> None:
    chat = to_chat({"model": "m", "max_tokens": 5, "system": "Be brief.", "messages": [{"role": "user", "content": "hi"}]})
    assert chat == {
        "model": "m",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        "max_completion_tokens": 5,
    }


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "any"}, {"tool_choice": "required"}),
        ({"type": "none"}, {"tool_choice": "none"}),
        ({"type": "tool", "name": "t"}, {"tool_choice": {"type": "function", "function": {"name": "t"}}}),
        ({"type": "any", "disable_parallel_tool_use": True}, {"tool_choice": "required", "parallel_tool_calls": False}),
    ],
)
def test_tool_choice(choice: dict[str, Any], expected: dict[str, Any]) -> None:
    body = {
        "model": "m",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "x"}],
        "tools": [{"name": "t", "input_schema": {"type": "object"}}],
        "tool_choice": choice,
    }
    chat = to_chat(body)
    assert {k: chat[k] for k in expected} == expected
    if "parallel_tool_calls" not in expected:
        assert "parallel_tool_calls" not in chat


@pytest.mark.parametrize(
    ("thinking", "effort"),
    [
        ({"type": "enabled", "budget_tokens": 1024}, "low"),
        ({"type": "enabled", "budget_tokens": 8192}, "medium"),
        ({"type": "enabled", "budget_tokens": 50000}, "high"),
        ({"type": "disabled"}, None),
    ],
)
def test_thinking_becomes_reasoning_effort(thinking: dict[str, Any], effort: str | None) -> None:
    chat = to_chat({"model": "m", "max_tokens": 99999, "messages": [{"role": "user", "content": "x"}], "thinking": thinking})
    assert chat.get("reasoning_effort") == effort


def test_max_tokens_clamped_to_the_deployment_limit() -> None:
    body = {"model": "m", "max_tokens": 64000, "messages": [{"role": "user", "content": "x"}]}
    assert to_chat(body, max_tokens_limit=16384)["max_completion_tokens"] == 16384
    assert to_chat(body)["max_completion_tokens"] == 64000


@pytest.mark.parametrize(
    ("patch", "param"),
    [
        ({"max_tokens": None}, "max_tokens"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages.0.role"),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools.0.type"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "tool_result", "tool_use_id": "a"}, {"type": "tool_result", "tool_use_id": "a"}],
                    }
                ]
            },
            "messages.0.content.1.tool_use_id",
        ),
        ({"temperature": 1.5}, "temperature"),
        ({"tool_choice": {"type": "any"}}, "tool_choice"),
    ],
)
def test_bad_requests_name_the_parameter(patch: dict[str, Any], param: str) -> None:
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], **patch}
    body = {k: v for k, v in body.items() if v is not None}
    with pytest.raises(InvalidRequest) as info:
        to_chat(body)
    assert info.value.param == param


# --- response -------------------------------------------------------------------------------------


def test_completion_with_reasoning_and_tools_becomes_a_message() -> None:
    chat = load("chat_completion_tools.json")
    usage = Usage.from_openai(chat["usage"])
    message = to_message(chat, model="claude-test", usage=usage)
    assert message["id"].startswith("msg_") and message["id"] != to_message(chat, model="x", usage=usage)["id"]
    assert message["model"] == "claude-test"
    assert message["content"] == [
        {"type": "thinking", "thinking": "Need two calls.", "signature": ""},
        {"type": "text", "text": "Checking both."},
        {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_b", "name": "get_time", "input": {}},  # unparseable arguments
    ]
    assert message["stop_reason"] == "tool_use"
    # Anthropic's meaning: input_tokens excludes the cache reads.
    assert message["usage"] == {
        "input_tokens": 20,
        "output_tokens": 33,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 100,
    }


@pytest.mark.parametrize(("finish", "stop"), [("stop", "end_turn"), ("length", "max_tokens"), ("content_filter", "refusal")])
def test_stop_reasons(finish: str, stop: str) -> None:
    chat = {"choices": [{"message": {"role": "assistant", "content": "x"}, "finish_reason": finish}]}
    assert to_message(chat, model="m", usage=None)["stop_reason"] == stop


# --- stream -------------------------------------------------------------------------------------------


def test_stream_text_then_split_parallel_tools() -> None:
    message = check_and_accumulate(parse_sse(encode("chat_tool_args_split.sse")))
    assert message["content"] == [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_b", "name": "get_time", "input": {"tz": "CET"}},
    ]
    assert message["stop_reason"] == "tool_use"
    assert message["usage"]["output_tokens"] == 33
    assert message["usage"]["input_tokens"] == 20 and message["usage"]["cache_read_input_tokens"] == 100


def test_stream_interleaved_parallel_tools_arrive_whole_and_in_index_order() -> None:
    # Three calls named up front, then argument deltas for index 0, 1, 2 alternating.
    frames = parse_sse(encode("chat_tool_args_interleaved.sse"))
    message = check_and_accumulate(frames)
    assert message["content"] == [
        {"type": "tool_use", "id": "call_r", "name": "Read", "input": {"file_path": "/repo/a.py"}},
        {"type": "tool_use", "id": "call_g", "name": "Grep", "input": {"pattern": "TODO", "path": "src"}},
        {"type": "tool_use", "id": "call_b", "name": "Bash", "input": {"command": "ls -la"}},
    ]
    assert message["stop_reason"] == "tool_use"
    starts = [d["index"] for e, d in frames if e == "content_block_start"]
    assert starts == [0, 1, 2]


def test_stream_sequential_parallel_tools_still_stream_live() -> None:
    # The second call opens on its own first chunk (the first call's arguments are a whole object), not at the end.
    encoder = MessagesStreamEncoder("claude-test")
    fed = [encoder.feed(c) for c in chunks("chat_tool_args_split.sse")]
    opened_by = [i for i, out in enumerate(fed) if b'"name":"get_time"' in out]
    assert opened_by == [5]
    assert b"input_json_delta" in fed[6]


def test_stream_arguments_only_at_the_end_are_still_sent() -> None:
    frames = parse_sse(encode("chat_tool_args_at_end.sse"))
    message = check_and_accumulate(frames)
    assert message["content"] == [{"type": "tool_use", "id": "call_z", "name": "Read", "input": {"file_path": "/repo/a.py"}}]
    assert any(d.get("delta", {}).get("type") == "input_json_delta" for _, d in frames)


def test_stream_arguments_before_the_name_are_buffered() -> None:
    message = check_and_accumulate(parse_sse(encode("chat_tool_args_before_name.sse")))
    assert message["content"] == [{"type": "tool_use", "id": "call_q", "name": "Bash", "input": {"command": "ls"}}]
    assert message["stop_reason"] == "tool_use"
    # No usage chunk: an estimate, never zero output.
    assert message["usage"]["output_tokens"] > 0


def test_stream_reasoning_then_text_opens_a_thinking_block_first() -> None:
    message = check_and_accumulate(parse_sse(encode("chat_reasoning_then_text.sse")))
    assert message["content"] == [
        {"type": "thinking", "thinking": "Two plus two is four.", "signature": ""},
        {"type": "text", "text": "4"},
    ]
    assert message["stop_reason"] == "max_tokens"


def test_stream_signature_delta_when_the_canonical_stream_carries_one() -> None:
    encoder = MessagesStreamEncoder("m")
    raw = encoder.feed({"choices": [{"index": 0, "delta": {"reasoning_content": "hmm"}}]})
    raw += encoder.feed({"choices": [{"index": 0, "delta": {"reasoning_signature": "sig-1"}}]})
    raw += encoder.feed({"choices": [{"index": 0, "delta": {"content": "ok"}, "finish_reason": "stop"}]})
    raw += encoder.finish()
    frames = parse_sse(raw)
    message = check_and_accumulate(frames)
    assert message["content"][0] == {"type": "thinking", "thinking": "hmm", "signature": "sig-1"}
    names = [(d["type"], d.get("delta", {}).get("type")) for _, d in frames]
    assert names.index(("content_block_delta", "signature_delta")) + 1 == names.index(("content_block_stop", None))


def test_stream_empty_text_has_no_blocks() -> None:
    message = check_and_accumulate(parse_sse(encode("chat_empty_text.sse")))
    assert message["content"] == []
    assert message["stop_reason"] == "end_turn"


def test_stream_failure_closes_the_open_block_then_sends_an_error_event() -> None:
    encoder = MessagesStreamEncoder("m")
    raw = encoder.feed({"choices": [{"index": 0, "delta": {"content": "par"}}]}) + encoder.fail("overloaded_error", "Overloaded")
    frames = parse_sse(raw)
    assert [n for n, _ in frames] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "error",
    ]
    assert frames[-1][1] == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    assert encoder.finish() == b""  # nothing after the error


# --- errors ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("err", "status", "etype"),
    [
        (InvalidRequest("bad"), 400, "invalid_request_error"),
        (AuthenticationFailed("no key"), 401, "authentication_error"),
        (PermissionDenied("not yours"), 403, "permission_error"),
        (ModelNotFound("m"), 404, "not_found_error"),
        (PayloadTooLarge("big"), 413, "request_too_large"),
        (RateLimited("slow"), 429, "rate_limit_error"),
        (BudgetExceeded("spent"), 429, "rate_limit_error"),
        (GatewayInternal("oops"), 500, "api_error"),
        (from_upstream_status(500, "boom"), 502, "api_error"),
        (from_upstream_status(529, "Overloaded"), 529, "overloaded_error"),
        (
            from_upstream_status(400, "prompt is too long: 209375 tokens > 200000 maximum", type="invalid_request_error"),
            400,
            "invalid_request_error",
        ),
    ],
)
def test_error_rendering(err: Any, status: int, etype: str) -> None:
    got_status, body = render_error(err, "req_1")
    assert got_status == status
    assert orjson.loads(body) == {"type": "error", "error": {"type": etype, "message": err.message}, "request_id": "req_1"}


# --- pings while the upstream is silent ------------------------------------------------------------


async def test_pings_while_the_upstream_is_silent_and_clean_close() -> None:
    import asyncio

    from lockgate.ingress.messages.adapter import with_pings
    from lockgate.ingress.messages.stream import PING

    closed = asyncio.Event()

    async def slow() -> Any:
        try:
            yield b"a"
            await asyncio.sleep(0.35)
            yield b"b"
            await asyncio.sleep(10)
            yield b"never"
        finally:
            closed.set()

    relayed = with_pings(slow(), interval_s=0.1)
    got = [await relayed.__anext__()]
    while got[-1] != b"b":
        got.append(await relayed.__anext__())
    assert got[0] == b"a" and set(got[1:-1]) == {PING} and len(got) >= 4  # at least two pings in 0.35 s
    await relayed.aclose()  # the client left: the upstream generator is closed, not leaked
    assert closed.is_set()


async def test_pings_relay_keeps_order_bounds_read_ahead_and_raises_the_streams_error() -> None:
    import asyncio

    from lockgate.ingress.messages.pings import READ_AHEAD, with_pings

    produced: list[int] = []

    async def burst() -> Any:
        for i in range(READ_AHEAD * 3):
            produced.append(i)
            yield str(i).encode()
        raise RuntimeError("upstream broke")

    relayed = with_pings(burst(), interval_s=5)
    assert await relayed.__anext__() == b"0"
    await asyncio.sleep(0.05)  # a client that stops reading: the reader stops too, a bounded way ahead
    assert len(produced) <= READ_AHEAD + 2
    got = [b"0"]
    try:
        async for chunk in relayed:
            got.append(chunk)
    except RuntimeError as err:
        assert str(err) == "upstream broke"
    else:
        raise AssertionError("the stream's error was not raised")
    assert got == [str(i).encode() for i in range(READ_AHEAD * 3)]
