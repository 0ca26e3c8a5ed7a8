"""The official `openai` SDK's Responses helpers and error classes against `lockgate serve`, on a translated
OpenAI-protocol deployment (the fake OpenAI upstream), an Anthropic deployment (the fake Anthropic upstream)
and the mock: structured output (`responses.parse`), the strict `responses.stream()` helper, parallel tool
calls round trips, `max_output_tokens` -> incomplete, `store: false` chains, `input_tokens`, and every error
class. What tests/test_responses_e2e.py already covers is not repeated here."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest
from pydantic import BaseModel

from lockgate.providers.anthropic.request import JSON_TOOL_NAME
from lockgate.providers.base import tokens_for_chars
from tests.conftest import basic_config
from tests.fakes.anthropic_upstream import UPSTREAM_KEY as ANTHROPIC_KEY
from tests.fakes.anthropic_upstream import FakeAnthropic, tool_use
from tests.fakes.openai_upstream import FakeOpenAI
from tests.harness import MASTER_KEY, GatewayProcess
from tests.responses_support import check_stream, parse_sse


class Weather(BaseModel):
    city: str
    celsius: int


class GetWeather(BaseModel):
    """Weather now in a city."""

    city: str


WEATHER_TOOL: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather now",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}


@pytest.fixture(scope="module")
def gateway(
    fake_openai_server: FakeOpenAI, fake_anthropic_server: FakeAnthropic, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    workdir = tmp_path_factory.mktemp("responses-sdk")
    config = basic_config(fake_openai_server, database={"url": f"sqlite:///{workdir / 'gw.db'}"})
    anthropic = {"provider": "anthropic", "model": "claude-upstream-1", "api_base": fake_anthropic_server.url}
    config["models"] += [
        {"name": "claude-test", "deployments": [{**anthropic, "api_key": ANTHROPIC_KEY, "max_tokens_default": 512}]},
        {"name": "mock-fixed", "deployments": [{"provider": "mock", "model": "m", "mock_response": "one two three four five"}]},
    ]
    gw = GatewayProcess(config, workdir).start()
    yield gw
    gw.stop()


@pytest.fixture
def client(gateway: GatewayProcess, fake_openai: FakeOpenAI) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url, api_key=MASTER_KEY, max_retries=0, timeout=20)


def new_key(gateway: GatewayProcess, **fields: Any) -> str:
    created = httpx.post(
        f"{gateway.base_url}/admin/keys",
        json={"name": "responses-sdk", **fields},
        headers={"authorization": f"Bearer {MASTER_KEY}"},
    )
    assert created.status_code == 201, created.text
    return str(created.json()["key"])


def raw_stream(gateway: GatewayProcess, body: dict[str, Any]) -> list[dict[str, Any]]:
    answer = httpx.post(
        f"{gateway.url}/responses", json={**body, "stream": True}, headers={"authorization": f"Bearer {MASTER_KEY}"}, timeout=20
    )
    assert answer.status_code == 200, answer.text
    return parse_sse(answer.content)


# --- structured output ------------------------------------------------------------------------------


def test_parse_text_format_on_an_openai_deployment(client: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    fake_openai.reply.content = json.dumps({"city": "Paris", "celsius": 18})
    parsed = client.responses.parse(model="gpt-test", input="Weather in Paris?", text_format=Weather)
    assert parsed.output_parsed == Weather(city="Paris", celsius=18)
    sent = fake_openai.requests[-1].body["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["name"] == "Weather"
    assert sent["json_schema"]["strict"] is True and sent["json_schema"]["schema"]["required"] == ["city", "celsius"]

    with client.responses.stream(model="gpt-test", input="Weather in Paris?", text_format=Weather) as stream:
        final = stream.get_final_response()
    assert final.output_parsed == Weather(city="Paris", celsius=18)


def test_parse_text_format_on_an_anthropic_deployment(client: openai.OpenAI, fake_anthropic: FakeAnthropic) -> None:
    # Anthropic has no response_format: the provider forces a tool whose input is the answer.
    fake_anthropic.reply.content = [tool_use("toolu_json_1", JSON_TOOL_NAME, {"city": "Rome", "celsius": 25})]
    fake_anthropic.reply.stop_reason = "tool_use"
    parsed = client.responses.parse(model="claude-test", input="Weather in Rome?", text_format=Weather)
    assert parsed.status == "completed" and parsed.output_parsed == Weather(city="Rome", celsius=25)
    assert [item.type for item in parsed.output] == ["message"]  # the forced tool is not a function call to the client
    sent = fake_anthropic.requests[-1].body
    assert sent["tool_choice"]["name"] == JSON_TOOL_NAME and sent["tools"][0]["input_schema"]["required"] == ["city", "celsius"]
    with client.responses.stream(model="claude-test", input="Weather in Rome?", text_format=Weather) as stream:
        final = stream.get_final_response()
    assert final.output_parsed == Weather(city="Rome", celsius=25)


def test_parse_a_strict_pydantic_function_tool(client: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    fake_openai.reply.content = None
    fake_openai.reply.tool_calls = [
        {"id": "call_p1", "type": "function", "function": {"name": "GetWeather", "arguments": '{"city": "Oslo"}'}}
    ]
    parsed = client.responses.parse(model="gpt-test", input="Oslo?", tools=[openai.pydantic_function_tool(GetWeather)])
    call = parsed.output[0]
    assert call.type == "function_call" and call.parsed_arguments == GetWeather(city="Oslo")  # type: ignore[union-attr]
    sent = fake_openai.requests[-1].body["tools"][0]["function"]
    assert sent["name"] == "GetWeather" and sent["strict"] is True


# --- the strict stream helper ------------------------------------------------------------------------


def test_stream_helper_on_interleaved_parallel_tool_calls(
    client: openai.OpenAI, gateway: GatewayProcess, fake_openai: FakeOpenAI
) -> None:
    # The upstream interleaves two calls' argument deltas (index 0, 1, 0, 1...): each must reach its own item,
    # with output indexes dense and in order of first appearance (openai-node's validateArrayAppend).
    fake_openai.reply.content = None
    fake_openai.reply.interleave_tools = True
    fake_openai.reply.tool_calls = [
        {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris, France"}'}},
        {"id": "call_b", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Rome, Italy"}'}},
    ]
    events = raw_stream(gateway, {"model": "gpt-test", "input": "Both?", "tools": [WEATHER_TOOL]})
    final = check_stream(events)
    added = [e["item"] for e in events if e["type"] == "response.output_item.added"]
    assert [(i["type"], i["arguments"]) for i in added] == [("function_call", ""), ("function_call", "")]
    for index, city in ((0, "Paris, France"), (1, "Rome, Italy")):
        deltas = "".join(
            e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta" and e["output_index"] == index
        )
        done = next(e for e in events if e["type"] == "response.function_call_arguments.done" and e["output_index"] == index)
        assert json.loads(deltas) == json.loads(done["arguments"]) == {"city": city}
    assert [o["call_id"] for o in final["output"]] == ["call_a", "call_b"]

    names: list[str] = []
    with client.responses.stream(model="gpt-test", input="Both?", tools=[WEATHER_TOOL]) as stream:
        for event in stream:
            if event.type == "response.function_call_arguments.done":
                names.append(event.name)  # type: ignore[attr-defined]
        response = stream.get_final_response()
    assert names == ["get_weather", "get_weather"]
    assert [json.loads(o.arguments) for o in response.output] == [{"city": "Paris, France"}, {"city": "Rome, Italy"}]  # type: ignore[union-attr]


def test_parallel_tool_calls_round_trip_on_anthropic(client: openai.OpenAI, fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.reply.content = [
        tool_use("toolu_1", "get_weather", {"city": "Paris"}),
        tool_use("toolu_2", "get_weather", {"city": "Rome"}),
    ]
    fake_anthropic.reply.stop_reason = "tool_use"
    with client.responses.stream(model="claude-test", input="Weather?", tools=[WEATHER_TOOL]) as stream:
        first = stream.get_final_response()
    calls = [o for o in first.output if o.type == "function_call"]
    assert [(c.call_id, json.loads(c.arguments)) for c in calls] == [
        ("toolu_1", {"city": "Paris"}),
        ("toolu_2", {"city": "Rome"}),
    ]

    fake_anthropic.reset()
    fake_anthropic.reply.content = [{"type": "text", "text": "Paris 18C, Rome 25C."}]
    outputs = [{"type": "function_call_output", "call_id": c.call_id, "output": t} for c, t in zip(calls, ("18C", "25C"))]
    second = client.responses.create(
        model="claude-test", input=outputs, previous_response_id=first.id, tools=[WEATHER_TOOL], parallel_tool_calls=False
    )
    assert second.output_text == "Paris 18C, Rome 25C."
    messages = fake_anthropic.requests[-1].body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert [b["id"] for b in messages[1]["content"] if b["type"] == "tool_use"] == ["toolu_1", "toolu_2"]
    results = [b for b in messages[2]["content"] if b["type"] == "tool_result"]
    assert [(r["tool_use_id"], r["content"]) for r in results] in (
        [("toolu_1", "18C"), ("toolu_2", "25C")],
        [("toolu_1", [{"type": "text", "text": "18C"}]), ("toolu_2", [{"type": "text", "text": "25C"}])],
    )
    assert fake_anthropic.requests[-1].body["tool_choice"].get("disable_parallel_tool_use") is True


# --- status incomplete --------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["mock-fixed", "claude-test"])
def test_max_output_tokens_gives_incomplete(
    client: openai.OpenAI, gateway: GatewayProcess, fake_anthropic: FakeAnthropic, model: str
) -> None:
    fake_anthropic.reply.stop_reason = "max_tokens"  # what Anthropic says when max_tokens cut the answer
    response = client.responses.create(model=model, input="Count", max_output_tokens=2)
    assert response.status == "incomplete" and response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens" and response.max_output_tokens == 2
    if model == "mock-fixed":
        assert response.output_text == "one two " and response.usage is not None and response.usage.output_tokens == 2
    else:
        assert fake_anthropic.requests[-1].body["max_tokens"] == 2

    events = raw_stream(gateway, {"model": model, "input": "Count", "max_output_tokens": 2})
    final = check_stream(events)
    assert events[-1]["type"] == "response.incomplete" and final["incomplete_details"] == {"reason": "max_output_tokens"}
    with client.responses.stream(model=model, input="Count", max_output_tokens=2) as stream:
        # The helper's get_final_response() wants response.completed (as against OpenAI itself, which also
        # ends such a turn with response.incomplete); its event loop must still accept the whole stream.
        seen = list(stream)
    assert seen[-1].type == "response.incomplete" and seen[-1].response.status == "incomplete"  # type: ignore[union-attr]
    # An incomplete turn is still a turn: it is stored and can be continued.
    follow = client.responses.create(model=model, input="Go on", previous_response_id=response.id)
    assert follow.previous_response_id == response.id


# --- store: false -------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["gpt-test", "claude-test"])
def test_store_false_then_chaining_is_previous_response_not_found(
    client: openai.OpenAI, fake_anthropic: FakeAnthropic, model: str
) -> None:
    with client.responses.stream(model=model, input="Hi", store=False) as stream:
        unstored = stream.get_final_response()
    assert unstored.store is False and unstored.status == "completed"
    for stream_it in (False, True):
        with pytest.raises(openai.BadRequestError) as info:
            client.responses.create(model=model, input="Again", previous_response_id=unstored.id, stream=stream_it)  # type: ignore[call-overload]
        assert info.value.status_code == 400 and info.value.code == "previous_response_not_found"
        assert info.value.param == "previous_response_id"  # type: ignore[attr-defined]
    with pytest.raises(openai.NotFoundError):
        client.responses.input_items.list(unstored.id)


# --- input_tokens ------------------------------------------------------------------------------------


def test_input_tokens_estimate_on_a_translated_deployment(client: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    counted = client.responses.input_tokens.count(model="gpt-test", input="Hello there", instructions="Be brief.")
    assert counted.object == "response.input_tokens"
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}]
    assert counted.input_tokens == tokens_for_chars(len(orjson.dumps([messages, None])))  # the documented estimate
    longer = client.responses.input_tokens.count(model="gpt-test", input="Hello there" * 50, tools=[WEATHER_TOOL])
    assert longer.input_tokens > tokens_for_chars(len("Hello there" * 50) + len(json.dumps(WEATHER_TOOL)))  # tools count too
    assert fake_openai.requests == []  # an estimate: nothing went upstream, nothing was generated

    first = client.responses.create(model="gpt-test", input="My name is Ada.")
    chained = client.responses.input_tokens.count(model="gpt-test", input="Who am I?", previous_response_id=first.id)
    alone = client.responses.input_tokens.count(model="gpt-test", input="Who am I?")
    assert chained.input_tokens > alone.input_tokens  # the stored conversation counts


def test_input_tokens_on_anthropic_is_anthropics_own_count(client: openai.OpenAI, fake_anthropic: FakeAnthropic) -> None:
    counted = client.responses.input_tokens.count(model="claude-test", input="Hello", instructions="Be brief.")
    seen = fake_anthropic.requests[-1]
    assert seen.path == "/v1/messages/count_tokens"
    assert seen.body["model"] == "claude-upstream-1" and "max_tokens" not in seen.body and seen.body["system"]
    # The fake's count is one token per 3 bytes of messages, system and tools, plus 7: the gateway relays it.
    assert counted.input_tokens == len(orjson.dumps([seen.body["messages"], seen.body["system"], None])) // 3 + 7


def test_input_tokens_errors(client: openai.OpenAI, gateway: GatewayProcess) -> None:
    with pytest.raises(openai.BadRequestError) as missing:
        client.responses.input_tokens.count(model="gpt-test")
    assert missing.value.param == "input"  # type: ignore[attr-defined]
    with pytest.raises(openai.NotFoundError):
        client.responses.input_tokens.count(model="no-such-model", input="Hi")
    nobody = openai.OpenAI(base_url=gateway.url, api_key="lg-wrong-key-000000", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        nobody.responses.input_tokens.count(model="gpt-test", input="Hi")
    limited = openai.OpenAI(base_url=gateway.url, api_key=new_key(gateway, models=["mock-gpt"]), max_retries=0)
    with pytest.raises(openai.PermissionDeniedError):
        limited.responses.input_tokens.count(model="gpt-test", input="Hi")


# --- every error class ---------------------------------------------------------------------------------


def test_400_names_the_param(client: openai.OpenAI) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"input": "Hi", "max_output_tokens": 0}, "max_output_tokens"),
        ({"input": []}, "input"),
        ({"input": "Hi", "instructions": 7}, "instructions"),
        ({"input": "Hi", "tools": [{"type": "code_interpreter", "container": {"type": "auto"}}]}, "tools"),
    ]
    for model in ("gpt-test", "claude-test"):
        for fields, param in cases:
            with pytest.raises(openai.BadRequestError) as info:
                client.responses.create(model=model, **fields)
            assert info.value.status_code == 400 and info.value.param == param, (model, fields)  # type: ignore[attr-defined]
            assert info.value.type == "invalid_request_error"  # type: ignore[attr-defined]


def test_401_on_every_route(gateway: GatewayProcess) -> None:
    nobody = openai.OpenAI(base_url=gateway.url, api_key="lg-wrong-key-000000", max_retries=0)
    calls = [
        lambda: nobody.responses.retrieve("resp_123"),
        lambda: nobody.responses.delete("resp_123"),
        lambda: nobody.responses.input_items.list("resp_123"),
        lambda: list(nobody.responses.create(model="gpt-test", input="Hi", stream=True)),
    ]
    for call in calls:
        with pytest.raises(openai.AuthenticationError) as info:
            call()
        # As OpenAI's own 401: type invalid_request_error, code invalid_api_key.
        assert info.value.status_code == 401 and set(info.value.body) == {"message", "type", "param", "code"}  # type: ignore[arg-type]


@pytest.mark.parametrize("stream", [False, True])
def test_403_model_not_allowed_for_the_key(gateway: GatewayProcess, fake_openai: FakeOpenAI, stream: bool) -> None:
    limited = openai.OpenAI(base_url=gateway.url, api_key=new_key(gateway, models=["mock-gpt"]), max_retries=0)
    assert limited.responses.create(model="mock-gpt", input="Hi").status == "completed"
    for model in ("gpt-test", "claude-test"):
        with pytest.raises(openai.PermissionDeniedError) as info:
            limited.responses.create(model=model, input="Hi", stream=stream)  # type: ignore[call-overload]
        assert info.value.status_code == 403 and info.value.param == "model"  # type: ignore[attr-defined]
    assert fake_openai.requests == []


def test_404_unknown_response_and_model(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as gone:
        client.responses.retrieve("resp_does_not_exist")
    assert gone.value.param == "response_id"  # type: ignore[attr-defined]
    with pytest.raises(openai.NotFoundError):
        client.responses.delete("resp_does_not_exist")
    with pytest.raises(openai.NotFoundError) as unknown:
        list(client.responses.create(model="no-such-model", input="Hi", stream=True))
    assert unknown.value.code == "model_not_found"


def test_413_too_large_body(client: openai.OpenAI) -> None:
    big = "x" * (64 * 1024 + 1)  # basic_config's max_body_bytes is 64 KiB
    for call in (
        lambda: client.responses.create(model="gpt-test", input=big),
        lambda: client.responses.input_tokens.count(model="gpt-test", input=big),
    ):
        with pytest.raises(openai.APIStatusError) as info:
            call()
        assert info.value.status_code == 413 and info.value.body["type"] == "invalid_request_error"  # type: ignore[index]


def test_429_from_the_gateways_limiter_has_retry_after(gateway: GatewayProcess) -> None:
    limited = openai.OpenAI(base_url=gateway.url, api_key=new_key(gateway, rpm=1), max_retries=0)
    limited.responses.create(model="mock-gpt", input="Hi")
    with pytest.raises(openai.RateLimitError) as info:
        limited.responses.create(model="mock-gpt", input="Hi again")
    assert info.value.status_code == 429 and int(info.value.response.headers["retry-after"]) >= 1
    assert info.value.code == "rate_limit_exceeded"


@pytest.mark.parametrize("model", ["gpt-test", "claude-test"])
def test_429_from_the_upstream_has_retry_after(
    client: openai.OpenAI, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic, model: str
) -> None:
    fault: dict[str, Any] = {"status": 429, "headers": {"retry-after": "7"}}
    if model == "claude-test":
        fault["type"] = "rate_limit_error"  # Anthropic's error type for a 429
    (fake_openai if model == "gpt-test" else fake_anthropic).faults.append(fault)
    with pytest.raises(openai.RateLimitError) as info:
        client.responses.create(model=model, input="Hi")
    assert info.value.status_code == 429 and info.value.response.headers["retry-after"] == "7"
    assert set(info.value.body) == {"message", "type", "param", "code"}  # type: ignore[arg-type]


def test_upstream_500_is_internal_server_error(client: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    fake_openai.faults.append({"status": 500})
    with pytest.raises(openai.InternalServerError) as info:
        client.responses.create(model="gpt-test", input="Hi")
    assert info.value.status_code >= 500 and "Traceback" not in info.value.response.text
