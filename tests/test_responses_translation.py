"""Pure translation of the Responses ingress, with recorded fixtures: request, response, stream."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from openai import omit
from openai._models import construct_type
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import ResponseStreamEvent

from lockgate.errors import InvalidRequest
from lockgate.ingress.responses.request import to_chat
from lockgate.ingress.responses.response import to_response
from lockgate.ingress.responses.stream import ResponsesStreamEncoder
from lockgate.providers.base import Usage
from tests.responses_support import check_stream, parse_sse

FIXTURES = Path(__file__).parent / "fixtures" / "responses"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def chunks(name: str) -> list[dict[str, Any]]:
    return [
        json.loads(line[6:])
        for line in (FIXTURES / name).read_text().splitlines()
        if line.startswith("data: ") and line != "data: [DONE]"
    ]


def encode(name: str, request: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    encoder = ResponsesStreamEncoder(request or {"model": "m"}, response_id="resp_1", model="public-model", input_tokens=3)
    raw = encoder.start() + b"".join(encoder.feed(c) for c in chunks(name)) + encoder.finish()
    return parse_sse(raw)


def sdk_final(events: list[dict[str, Any]]) -> Any:
    """Run the events through the official SDK's strict stream state; its final response."""
    state = ResponseStreamState(input_tools=omit, text_format=omit)
    final = None
    for data in events:
        for event in state.handle_event(construct_type(type_=ResponseStreamEvent, value=data)):  # type: ignore[arg-type]
            if event.type in ("response.completed", "response.incomplete"):
                final = event.response
    return final


# --- request -------------------------------------------------------------------------------------


def test_agent_turn_request_matches_recorded_chat() -> None:
    assert to_chat(load("request_agent_turn.json")) == load("request_agent_turn.chat.json")


def test_string_input_is_one_user_message_and_history_comes_first() -> None:
    history = [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "My name is Ada."}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hello Ada."}]},
    ]
    chat = to_chat({"model": "m", "input": "What is my name?"}, history)
    assert chat["messages"] == [
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Hello Ada."},
        {"role": "user", "content": "What is my name?"},
    ]
    assert "stream" not in chat


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "hi"}, "model"),
        ({"model": "m"}, "input"),
        ({"model": "m", "input": 3}, "input"),
        ({"model": "m", "input": "hi", "tools": [{"type": "web_search"}]}, "tools"),
        ({"model": "m", "input": "hi", "tools": [{"type": "function"}]}, "tools[0].name"),
        ({"model": "m", "input": "hi", "max_output_tokens": 0}, "max_output_tokens"),
        ({"model": "m", "input": "hi", "tool_choice": {"type": "file_search"}}, "tool_choice"),
        ({"model": "m", "input": "hi", "text": {"format": {"type": "yaml"}}}, "text.format.type"),
        ({"model": "m", "input": [{"type": "function_call_output", "call_id": "call_nope", "output": "x"}]}, "input[0].call_id"),
        ({"model": "m", "input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
        ({"model": "m", "input": [{"type": "item_reference", "id": "x"}]}, "input[0].type"),
    ],
)
def test_bad_requests_name_their_param(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        to_chat(body)
    assert caught.value.param == param


# --- response ------------------------------------------------------------------------------------


def test_completion_becomes_a_response_with_items_and_usage() -> None:
    request = {"model": "m", "input": "hi", "metadata": {"a": "b"}, "tools": [], "temperature": 0.5}
    usage = Usage(prompt_tokens=120, completion_tokens=33, cached_tokens=100, reasoning_tokens=7)
    out = to_response(load("chat_completion_tools.json"), request, response_id="resp_1", model="public", usage=usage)
    assert out["id"] == "resp_1" and out["object"] == "response" and out["model"] == "public"
    assert out["status"] == "completed" and out["incomplete_details"] is None and out["error"] is None
    assert [i["type"] for i in out["output"]] == ["reasoning", "message", "function_call", "function_call"]
    assert out["output"][1]["content"][0] == {"type": "output_text", "text": "Checking both.", "annotations": [], "logprobs": []}
    calls = out["output"][2:]
    assert [(c["call_id"], c["name"], c["arguments"]) for c in calls] == [
        ("call_a", "get_weather", '{"city": "Paris"}'),
        ("call_b", "get_time", "not json"),  # passed on as the model wrote it, never lost
    ]
    assert all(c["id"].startswith("fc_") for c in calls)
    assert out["usage"] == {
        "input_tokens": 120,
        "input_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 0},
        "output_tokens": 33,
        "output_tokens_details": {"reasoning_tokens": 7},
        "total_tokens": 153,
    }
    assert out["metadata"] == {"a": "b"} and out["temperature"] == 0.5 and out["tool_choice"] == "auto"


@pytest.mark.parametrize(("finish", "reason"), [("length", "max_output_tokens"), ("content_filter", "content_filter")])
def test_cut_short_completion_is_incomplete(finish: str, reason: str) -> None:
    chat = {"choices": [{"index": 0, "finish_reason": finish, "message": {"role": "assistant", "content": "Once"}}]}
    out = to_response(chat, {"model": "m"}, response_id="resp_1", model="m", usage=None)
    assert out["status"] == "incomplete" and out["incomplete_details"] == {"reason": reason}
    assert out["usage"]["input_tokens_details"] == {"cached_tokens": 0, "cache_write_tokens": 0}


# --- stream --------------------------------------------------------------------------------------


def test_text_and_tool_stream_has_the_exact_event_sequence() -> None:
    events = encode("chat_tool_args_split.sse")
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    final = check_stream(events)
    assert events[2]["item"]["content"] == [] and events[3]["part"]["text"] == ""
    assert events[8]["item"]["arguments"] == ""
    assert [(o["call_id"], o["arguments"]) for o in final["output"][1:]] == [
        ("call_a", '{"city": "Paris"}'),
        ("call_b", '{"tz": "CET"}'),
    ]
    assert final["usage"]["input_tokens"] == 120 and final["usage"]["input_tokens_details"]["cached_tokens"] == 100
    parsed = sdk_final(events)
    assert parsed.output_text == "Checking."
    assert [o.arguments for o in parsed.output[1:]] == ['{"city": "Paris"}', '{"tz": "CET"}']


def test_interleaved_tool_arguments_reach_their_own_call() -> None:
    events = encode("chat_tool_calls_interleaved.sse")
    final = check_stream(events)
    assert [(o["call_id"], o["arguments"]) for o in final["output"]] == [("call_x", '{"q": "a"}'), ("call_y", '{"q": "b"}')]
    done = {e["output_index"]: e["arguments"] for e in events if e["type"] == "response.function_call_arguments.done"}
    deltas: dict[int, str] = {}
    for e in events:
        if e["type"] == "response.function_call_arguments.delta":
            deltas[e["output_index"]] = deltas.get(e["output_index"], "") + e["delta"]
    assert deltas == done == {0: '{"q": "a"}', 1: '{"q": "b"}'}
    assert sdk_final(events) is not None


def test_arguments_before_the_name_are_not_lost() -> None:
    final = check_stream(encode("chat_tool_args_before_name.sse"))
    calls = [o for o in final["output"] if o["type"] == "function_call"]
    assert calls and all(c["arguments"] for c in calls)
    expected = load_arguments("chat_tool_args_before_name.sse")
    assert [c["arguments"] for c in calls] == expected


def load_arguments(name: str) -> list[str]:
    joined: dict[int, str] = {}
    for c in chunks(name):
        for choice in c.get("choices") or ():
            for call in (choice.get("delta") or {}).get("tool_calls") or ():
                joined[call.get("index", 0)] = joined.get(call.get("index", 0), "") + (
                    (call.get("function") or {}).get("arguments") or ""
                )
    return [joined[i] for i in sorted(joined)]


def test_reasoning_then_text() -> None:
    events = encode("chat_reasoning_then_text.sse")
    final = check_stream(events)
    assert [o["type"] for o in final["output"]] == ["reasoning", "message"]
    assert final["output"][0]["content"][0]["type"] == "reasoning_text" and final["output"][0]["content"][0]["text"]
    assert sdk_final(events).output_text == final["output"][1]["content"][0]["text"]


def test_length_ends_in_response_incomplete() -> None:
    events = encode("chat_length.sse")
    final = check_stream(events)
    assert events[-1]["type"] == "response.incomplete"
    assert final["status"] == "incomplete" and final["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["output"][0]["content"][0]["text"] == "Once upon a time"


def test_break_mid_stream_ends_in_response_failed() -> None:
    encoder = ResponsesStreamEncoder({"model": "m"}, response_id="resp_1", model="m")
    raw = encoder.feed(chunks("chat_length.sse")[0]) + encoder.fail("upstream_error", "The upstream broke.")
    raw += encoder.finish()  # nothing after the failure
    events = parse_sse(raw)
    final = check_stream(events)
    assert events[-1]["type"] == "response.failed"
    assert final["status"] == "failed" and final["error"] == {"code": "upstream_error", "message": "The upstream broke."}


def test_echoed_request_fields_in_created() -> None:
    events = encode("chat_length.sse", {"model": "m", "metadata": {"k": "v"}, "instructions": "Be brief.", "store": False})
    created = events[0]["response"]
    assert created["status"] == "in_progress" and created["output"] == []
    assert created["metadata"] == {"k": "v"} and created["instructions"] == "Be brief." and created["store"] is False
