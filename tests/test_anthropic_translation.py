"""Unit tests of the pure OpenAI <-> Anthropic translation (request and complete response)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from lockgate.errors import InvalidRequest, ProviderBadResponse
from lockgate.providers.anthropic.request import (
    JSON_TOOL_NAME,
    TranslationContext,
    completions_to_chat,
    to_anthropic,
)
from lockgate.providers.anthropic.response import chat_completion, finish_reason, text_completion
from tests.fakes.anthropic_upstream import Invalid, validate

FIXTURES = Path(__file__).parent / "fixtures" / "anthropic"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def translate(body: dict[str, Any], default: int = 4096) -> tuple[dict[str, Any], TranslationContext]:
    payload, ctx = to_anthropic(body, max_tokens_default=default)
    validate(payload)  # whatever we send must pass the fake's copy of Anthropic's rules
    return payload, ctx


def chat(messages: list[dict[str, Any]], **params: Any) -> dict[str, Any]:
    return {"model": "claude-test", "messages": messages, **params}


USER = [{"role": "user", "content": "Hi"}]


# --- requests: recorded fixtures --------------------------------------------------------------


@pytest.mark.parametrize("name", ["request_basic.json", "request_tools.json", "request_images.json"])
def test_request_fixture_translates_exactly(name: str) -> None:
    case = fixture(name)
    payload, _ = translate(case["openai"])
    assert payload == case["anthropic"]


def test_the_fake_refuses_what_anthropic_refuses() -> None:
    # The fake's rules are what make the fixture test above meaningful: check they bite.
    with pytest.raises(Invalid, match="max_tokens"):
        validate({"model": "m", "messages": [{"role": "user", "content": "x"}]})
    with pytest.raises(Invalid, match="system"):
        validate({"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]})
    with pytest.raises(Invalid, match="alternate"):
        validate({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}] * 2})
    with pytest.raises(Invalid, match="first message"):
        validate({"model": "m", "max_tokens": 5, "messages": [{"role": "assistant", "content": "x"}]})
    with pytest.raises(Invalid, match="Extra inputs"):
        validate({"model": "m", "max_tokens": 5, "n": 2, "messages": [{"role": "user", "content": "x"}]})


# --- requests: messages ------------------------------------------------------------------------


def test_max_tokens_default_and_precedence() -> None:
    assert translate(chat(USER), default=1234)[0]["max_tokens"] == 1234
    assert translate(chat(USER, max_tokens=50))[0]["max_tokens"] == 50
    assert translate(chat(USER, max_tokens=50, max_completion_tokens=70))[0]["max_tokens"] == 70
    with pytest.raises(InvalidRequest) as err:
        translate(chat(USER, max_tokens=0))
    assert err.value.param == "max_tokens"


def test_system_messages_anywhere_are_hoisted_in_order() -> None:
    payload, _ = translate(
        chat(
            [
                {"role": "user", "content": "a"},
                {"role": "system", "content": "first"},
                {"role": "assistant", "content": "b"},
                {"role": "developer", "content": "second"},
                {"role": "user", "content": "c"},
            ]
        )
    )
    assert payload["system"] == [{"type": "text", "text": "first"}, {"type": "text", "text": "second"}]
    assert [m["role"] for m in payload["messages"]] == ["user", "assistant", "user"]


def test_consecutive_assistant_messages_merge_and_empty_ones_vanish() -> None:
    payload, _ = translate(
        chat(
            [
                {"role": "user", "content": "a"},
                {"role": "assistant", "content": "b1"},
                {"role": "assistant", "content": None},
                {"role": "assistant", "content": [{"type": "refusal", "refusal": "b2"}]},
                {"role": "user", "content": "c"},
            ]
        )
    )
    assert payload["messages"][1] == {
        "role": "assistant",
        "content": [{"type": "text", "text": "b1"}, {"type": "text", "text": "b2"}],
    }


def test_tool_arguments_are_parsed_and_bad_ones_refused() -> None:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "f", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "t1", "content": ""},
    ]
    payload, _ = translate(chat(messages))
    assert payload["messages"][1]["content"] == [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]
    assert payload["messages"][2]["content"] == [{"type": "tool_result", "tool_use_id": "t1"}]
    messages[1]["tool_calls"][0]["function"]["arguments"] = "{not json"
    with pytest.raises(InvalidRequest) as err:
        translate(chat(messages))
    assert err.value.param == "messages[1].tool_calls[0].function.arguments"


@pytest.mark.parametrize(
    "url, param_hint",
    [
        ("data:image/svg+xml;base64,PHN2Zz4=", "image/svg+xml"),
        ("data:image/png,rawbytes", "base64"),
        ("ftp://example.com/a.png", "http(s)"),
    ],
)
def test_unusable_images_are_refused_clearly(url: str, param_hint: str) -> None:
    body = chat([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}])
    with pytest.raises(InvalidRequest, match=re.escape(param_hint)) as err:
        translate(body)
    assert err.value.param == "messages[0].content[0].image_url.url"


def test_pdf_file_part_becomes_a_document_block() -> None:
    part = {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"}}
    payload, _ = translate(chat([{"role": "user", "content": [part, {"type": "text", "text": "Summarise"}]}]))
    assert payload["messages"][0]["content"][0] == {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"},
        "title": "a.pdf",
    }


def test_cache_control_on_parts_is_kept() -> None:
    part = {"type": "text", "text": "long context", "cache_control": {"type": "ephemeral"}}
    payload, _ = translate(chat([{"role": "system", "content": [part]}, *USER]))
    assert payload["system"] == [{"type": "text", "text": "long context", "cache_control": {"type": "ephemeral"}}]


# --- requests: tools and choices -----------------------------------------------------------------

TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}


@pytest.mark.parametrize(
    "choice, expected",
    [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ("required", {"type": "any"}),
        ({"type": "function", "function": {"name": "f"}}, {"type": "tool", "name": "f"}),
    ],
)
def test_tool_choice(choice: Any, expected: dict[str, Any]) -> None:
    payload, _ = translate(chat(USER, tools=[TOOL], tool_choice=choice))
    assert payload["tool_choice"] == expected


def test_parallel_tool_calls_false_without_a_choice() -> None:
    payload, _ = translate(chat(USER, tools=[TOOL], parallel_tool_calls=False))
    assert payload["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    payload, _ = translate(chat(USER, tools=[TOOL], tool_choice="none", parallel_tool_calls=False))
    assert payload["tool_choice"] == {"type": "none"}  # Anthropic refuses the flag on none


def test_tool_choice_errors_name_the_param() -> None:
    for choice in ("required", {"type": "function", "function": {"name": "nope"}}, "sometimes"):
        tools = [TOOL] if choice != "required" else None
        with pytest.raises(InvalidRequest) as err:
            translate(chat(USER, tools=tools, tool_choice=choice))
        assert err.value.param == "tool_choice"
    # auto without tools means nothing and is dropped
    assert "tool_choice" not in translate(chat(USER, tool_choice="auto"))[0]


def test_json_schema_response_format_forces_a_tool() -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}
    rf = {"type": "json_schema", "json_schema": {"name": "result", "schema": schema, "strict": True}}
    payload, ctx = translate(chat(USER, response_format=rf))
    assert payload["tools"] == [
        {"name": JSON_TOOL_NAME, "description": payload["tools"][0]["description"], "input_schema": schema}
    ]
    assert payload["tool_choice"] == {"type": "tool", "name": JSON_TOOL_NAME}
    assert ctx.json_tool == JSON_TOOL_NAME and not ctx.json_wrapped


def test_json_response_format_with_client_tools_lets_the_model_choose() -> None:
    payload, ctx = translate(chat(USER, tools=[TOOL], response_format={"type": "json_object"}))
    assert [t["name"] for t in payload["tools"]] == ["f", JSON_TOOL_NAME]
    assert payload["tool_choice"] == {"type": "any"}
    assert ctx.json_tool == JSON_TOOL_NAME
    # a named choice wins: the answer is that call, response_format has no say
    payload, ctx = translate(
        chat(
            USER,
            tools=[TOOL],
            tool_choice={"type": "function", "function": {"name": "f"}},
            response_format={"type": "json_object"},
        )
    )
    assert ctx.json_tool is None and payload["tool_choice"] == {"type": "tool", "name": "f"}
    # text is the default and changes nothing
    assert "tools" not in translate(chat(USER, response_format={"type": "text"}))[0]


def test_non_object_schema_is_wrapped() -> None:
    rf = {"type": "json_schema", "json_schema": {"name": "xs", "schema": {"type": "array", "items": {"type": "string"}}}}
    payload, ctx = translate(chat(USER, response_format=rf))
    assert payload["tools"][0]["input_schema"]["properties"]["value"] == {"type": "array", "items": {"type": "string"}}
    assert ctx.json_wrapped


def test_reserved_tool_name_is_refused() -> None:
    tool = {"type": "function", "function": {"name": JSON_TOOL_NAME}}
    with pytest.raises(InvalidRequest):
        translate(chat(USER, tools=[tool]))


# --- requests: reasoning ------------------------------------------------------------------------------


def test_reasoning_effort_becomes_a_thinking_budget() -> None:
    payload, _ = translate(chat(USER, reasoning_effort="low"), default=1000)
    assert payload["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert payload["max_tokens"] == 3048  # the default answer room on top of the budget
    payload, _ = translate(chat(USER, reasoning_effort="high", max_completion_tokens=5000))
    assert payload["thinking"] == {"type": "enabled", "budget_tokens": 4999}
    assert payload["max_tokens"] == 5000
    assert "thinking" not in translate(chat(USER, reasoning_effort="none"))[0]


@pytest.mark.parametrize(
    "params, param",
    [
        ({"reasoning_effort": "medium", "max_tokens": 1000}, "max_tokens"),
        ({"reasoning_effort": "medium", "temperature": 0.5}, "temperature"),
        ({"reasoning_effort": "medium", "response_format": {"type": "json_object"}}, "response_format"),
        ({"reasoning_effort": "medium", "tools": [TOOL], "tool_choice": "required"}, "tool_choice"),
        ({"reasoning_effort": "enormous"}, "reasoning_effort"),
    ],
)
def test_reasoning_conflicts_are_refused(params: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        translate(chat(USER, **params))
    assert err.value.param == param


def test_thinking_is_left_off_when_continuing_a_tool_turn() -> None:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "42"},
    ]
    payload, _ = translate(chat(messages, tools=[TOOL], reasoning_effort="low"))
    assert "thinking" not in payload


# --- requests: parameters Anthropic cannot honour --------------------------------------------------------


@pytest.mark.parametrize(
    "params, param",
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"frequency_penalty": 0.5}, "frequency_penalty"),
        ({"presence_penalty": -1}, "presence_penalty"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
        ({"web_search_options": {}}, "web_search_options"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"temperature": 1.5}, "temperature"),
        ({"made_up_param": 1}, "made_up_param"),
    ],
)
def test_unhonourable_params_are_a_400_naming_them(params: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        translate(chat(USER, **params))
    assert err.value.param == param and err.value.status == 400
    assert param in err.value.message


def test_hints_are_dropped_and_noop_values_accepted() -> None:
    params = {
        "seed": 1,
        "service_tier": "auto",
        "store": True,
        "metadata": {"a": "b"},
        "prompt_cache_key": "k",
        "verbosity": "low",
        "n": 1,
        "logprobs": False,
        "frequency_penalty": 0,
        "logit_bias": {},
        "prediction": {"type": "content", "content": "x"},
        "modalities": ["text"],
        "top_k": 5,
    }
    payload, _ = translate(chat(USER, **params))
    assert payload == {
        "model": "claude-test",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
        "max_tokens": 4096,
        "top_k": 5,
    }


# --- responses ----------------------------------------------------------------------------------------------


def test_tool_use_message_becomes_tool_calls() -> None:
    body, usage = chat_completion(fixture("message_tool_use.json"), TranslationContext(model="claude-test"), created=1)
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "I'll check the current weather in San Francisco for you."
    calls = choice["message"]["tool_calls"]
    assert [c["id"] for c in calls] == ["toolu_01A09q90qw90lq917835lq9", "toolu_01B2x7Hk3mQ9sLz4vPn8RtYc"]
    assert json.loads(calls[0]["function"]["arguments"]) == {"location": "San Francisco, CA", "unit": "celsius"}
    assert json.loads(calls[1]["function"]["arguments"]) == {}
    assert all(c["type"] == "function" for c in calls)
    assert body["object"] == "chat.completion" and body["model"] == "claude-sonnet-4-5-20250929"
    assert body["usage"] == {
        "prompt_tokens": 384,
        "completion_tokens": 92,
        "total_tokens": 476,
        "prompt_tokens_details": {"cached_tokens": 0},
    }
    assert (usage.prompt_tokens, usage.completion_tokens) == (384, 92)


def test_cached_usage_counts_cache_reads_and_writes_as_prompt() -> None:
    body, usage = chat_completion(fixture("message_text_cached.json"), TranslationContext(model="m"))
    assert body["choices"][0]["message"]["content"] == "Hi! My name is Claude. How can I help?"
    assert body["choices"][0]["finish_reason"] == "stop"
    assert "tool_calls" not in body["choices"][0]["message"]
    assert body["usage"]["prompt_tokens"] == 21 + 188086 + 1500
    assert body["usage"]["prompt_tokens_details"] == {"cached_tokens": 1500}
    assert body["usage"]["total_tokens"] == 21 + 188086 + 1500 + 393
    assert (usage.cached_tokens, usage.cache_creation_tokens) == (1500, 188086)


def test_thinking_becomes_reasoning_content() -> None:
    body, _ = chat_completion(fixture("message_thinking.json"), TranslationContext(model="m"))
    message = body["choices"][0]["message"]
    assert message["reasoning_content"].startswith("To approach this")
    assert message["content"] == "Yes, there are infinitely many prime numbers such that n mod 4 = 3."
    assert body["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize(
    "stop, finish",
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("tool_use", "tool_calls"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("refusal", "content_filter"),
        ("something_new", "stop"),
        (None, "stop"),
    ],
)
def test_finish_reasons(stop: Any, finish: str) -> None:
    assert finish_reason(stop) == finish


def test_forced_json_tool_is_returned_as_content() -> None:
    message: dict[str, Any] = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "stop_reason": "tool_use",
        "content": [{"type": "tool_use", "id": "toolu_1", "name": JSON_TOOL_NAME, "input": {"answer": 42, "why": "é"}}],
        "usage": {"input_tokens": 5, "output_tokens": 6},
    }
    body, _ = chat_completion(message, TranslationContext(model="m", json_tool=JSON_TOOL_NAME))
    choice = body["choices"][0]
    assert json.loads(choice["message"]["content"]) == {"answer": 42, "why": "é"}
    assert choice["finish_reason"] == "stop" and "tool_calls" not in choice["message"]
    message["content"][0]["input"] = {"value": ["a", "b"]}
    body, _ = chat_completion(message, TranslationContext(model="m", json_tool=JSON_TOOL_NAME, json_wrapped=True))
    assert json.loads(body["choices"][0]["message"]["content"]) == ["a", "b"]


def test_not_a_message_is_a_bad_response() -> None:
    with pytest.raises(ProviderBadResponse):
        chat_completion({"type": "error", "error": {}}, TranslationContext(model="m"))


# --- legacy completions ------------------------------------------------------------------------------------------


def test_completions_prompt_becomes_one_user_message() -> None:
    chat_body = completions_to_chat({"model": "m", "prompt": ["Once upon"], "max_tokens": 5, "stop": ["."], "echo": False})
    assert chat_body == {"model": "m", "max_tokens": 5, "stop": ["."], "messages": [{"role": "user", "content": "Once upon"}]}
    for bad, param in (
        ({"prompt": ["a", "b"]}, "prompt"),
        ({"prompt": [1, 2]}, "prompt"),
        ({"prompt": "a", "echo": True}, "echo"),
        ({"prompt": "a", "suffix": "z"}, "suffix"),
        ({"prompt": "a", "best_of": 3}, "best_of"),
        ({"prompt": "a", "logprobs": 2}, "logprobs"),
    ):
        with pytest.raises(InvalidRequest) as err:
            completions_to_chat({"model": "m", **bad})
        assert err.value.param == param


def test_text_completion_shape() -> None:
    body, _ = chat_completion(fixture("message_text_cached.json"), TranslationContext(model="m"), created=5)
    legacy = text_completion(body)
    assert legacy["object"] == "text_completion"
    assert legacy["choices"] == [
        {"text": "Hi! My name is Claude. How can I help?", "index": 0, "logprobs": None, "finish_reason": "stop"}
    ]
    assert legacy["usage"] == {"prompt_tokens": 189607, "completion_tokens": 393, "total_tokens": 190000}
