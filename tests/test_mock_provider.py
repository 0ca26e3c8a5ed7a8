"""The mock provider through a real gateway: deterministic replies, latency and pacing, workers."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import anthropic
import httpx
import jsonschema
import openai
import pytest
from pydantic import BaseModel

from tests.harness import MASTER_KEY, GatewayProcess


def _config() -> dict:
    return {
        "auth": {"master_key": MASTER_KEY},
        "models": [
            {
                "name": "slow-mock",
                "deployments": [
                    {
                        "provider": "mock",
                        "model": "m",
                        "mock_latency_ms": 300,
                        "mock_tokens_per_s": 20,
                        "mock_response": "one two three four five",
                    }
                ],
            },
            {"name": "fixed", "deployments": [{"provider": "mock", "model": "m", "mock_response": "fixed answer here"}]},
            {"name": "echo", "deployments": [{"provider": "mock", "model": "m"}]},
        ],
    }


def test_latency_pacing_and_max_tokens(start_gateway: Callable[..., GatewayProcess]) -> None:
    gw = start_gateway(_config())
    client = openai.OpenAI(base_url=gw.url, api_key=MASTER_KEY, max_retries=0)
    started = time.perf_counter()
    arrivals = []
    for chunk in client.chat.completions.create(model="slow-mock", messages=[{"role": "user", "content": "x"}], stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.perf_counter() - started)
    assert arrivals[0] >= 0.3, "the first token waits for mock_latency_ms"
    # 5 tokens at 20/s: the last arrives at least 4 gaps of 50 ms after the first.
    assert len(arrivals) == 5 and arrivals[-1] - arrivals[0] >= 0.19
    short = client.chat.completions.create(model="fixed", messages=[{"role": "user", "content": "x"}], max_tokens=2)
    assert short.choices[0].message.content == "fixed answer " and short.choices[0].finish_reason == "length"
    assert short.usage.completion_tokens == 2
    text = client.completions.create(model="fixed", prompt="hello")
    assert text.choices[0].text == "fixed answer here" and text.object == "text_completion"


def test_several_workers_serve(start_gateway: Callable[..., GatewayProcess]) -> None:
    gw = start_gateway(_config(), workers=2)
    client = openai.OpenAI(base_url=gw.url, api_key=MASTER_KEY, max_retries=0)
    for _ in range(6):
        assert (
            client.chat.completions.create(model="fixed", messages=[{"role": "user", "content": "x"}]).choices[0].message.content
            == "fixed answer here"
        )


def test_streams_are_exact_openai_shapes(start_gateway: Callable[..., GatewayProcess]) -> None:
    gw = start_gateway(_config())
    client = openai.OpenAI(base_url=gw.url, api_key=MASTER_KEY, max_retries=0)
    chunks = list(
        client.chat.completions.create(
            model="fixed", messages=[{"role": "user", "content": "x"}], stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks[:-1]][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 3
    assert len({c.id for c in chunks}) == 1 and all(c.object == "chat.completion.chunk" for c in chunks)
    texts = list(client.completions.create(model="fixed", prompt="x", stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in texts if c.choices) == "fixed answer here"
    assert texts[-2].choices[0].finish_reason == "stop" and texts[-1].usage.total_tokens == texts[-1].usage.prompt_tokens + 3


# Tools and structured output: one gateway for the module (mock models, one with a fixed reply).

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1},
            },
            "required": ["city", "unit"],
        },
    },
}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


class City(BaseModel):
    name: str
    country: str
    population: int
    coastal: bool
    districts: list[str]


@pytest.fixture(scope="module")
def tools_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(_config(), tmp_path_factory.mktemp("mock-tools")).start()
    yield gw
    gw.stop()


@pytest.fixture
def client(tools_gateway: GatewayProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=tools_gateway.url, api_key=MASTER_KEY, max_retries=0)


def test_tool_call_then_answer_with_the_result(client: openai.OpenAI) -> None:
    first = client.chat.completions.create(model="echo", messages=ASK, tools=[TIME, WEATHER], tool_choice="auto")
    assert first.choices[0].finish_reason == "tool_calls"
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].message.content is None and call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather"  # the tool the question mentions ("weather")
    unasked = client.chat.completions.create(model="echo", messages=ASK, tools=[TIME])
    assert unasked.choices[0].message.tool_calls is None and unasked.choices[0].message.content.endswith("Paris?")
    required = client.chat.completions.create(model="echo", messages=ASK, tools=[TIME], tool_choice="required")
    call = required.choices[0].message.tool_calls[0]
    assert call.function.name == "get_time" and json.loads(call.function.arguments) == {}  # none mentioned: the first
    allowed: dict = {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [TIME]}}
    assert (
        client.chat.completions.create(model="echo", messages=ASK, tools=[TIME], tool_choice=allowed)
        .choices[0]
        .message.tool_calls
        is None
    )
    allowed["allowed_tools"]["mode"] = "required"
    assert (
        client.chat.completions.create(model="echo", messages=ASK, tools=[TIME], tool_choice=allowed).choices[0].finish_reason
        == "tool_calls"
    )
    named = client.chat.completions.create(
        model="echo",
        messages=ASK,
        tools=[TIME, WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    call = named.choices[0].message.tool_calls[0]
    args = json.loads(call.function.arguments)
    jsonschema.validate(args, WEATHER["function"]["parameters"])
    assert call.function.name == "get_weather" and args == {"city": "Paris", "unit": "celsius"}
    history = [*ASK, named.choices[0].message.model_dump(exclude_none=True)]
    history.append({"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 18}'})
    final = client.chat.completions.create(model="echo", messages=history, tools=[TIME, WEATHER])
    assert final.choices[0].finish_reason == "stop"
    assert final.choices[0].message.content == 'This is a mock reply from Lockgate. The tool get_weather returned: {"temp_c": 18}'
    plain = client.chat.completions.create(model="echo", messages=ASK, tools=[WEATHER], tool_choice="none")
    assert plain.choices[0].message.tool_calls is None and plain.choices[0].finish_reason == "stop"


def test_an_agents_reminders_are_not_the_users_words(client: openai.OpenAI) -> None:
    # Claude Code puts reminders naming its tools into the user's turn; only the user's own words count.
    agent = {"type": "function", "function": {"name": "Agent", "parameters": {"type": "object"}}}
    reminder = "<system-reminder>Available agent types for the Agent tool: ...</system-reminder>"
    said = [{"role": "user", "content": [{"type": "text", "text": reminder}, {"type": "text", "text": "Say hi"}]}]
    for messages in (said, [{"role": "user", "content": reminder + "\nSay hi"}]):
        reply = client.chat.completions.create(model="echo", messages=messages, tools=[agent])
        assert reply.choices[0].message.content == "This is a mock reply from Lockgate. You said: Say hi"


def test_a_fixed_reply_stays_fixed_unless_a_tool_is_forced(client: openai.OpenAI) -> None:
    auto = client.chat.completions.create(model="fixed", messages=ASK, tools=[WEATHER])
    assert auto.choices[0].message.content == "fixed answer here" and auto.choices[0].message.tool_calls is None
    forced = client.chat.completions.create(model="fixed", messages=ASK, tools=[WEATHER], tool_choice="required")
    assert forced.choices[0].message.tool_calls[0].function.name == "get_weather"


def test_a_tool_choice_naming_no_tool_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="echo", messages=ASK, tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "nope"}}
        )
    assert caught.value.body["param"] == "tool_choice"


def test_a_streamed_tool_call_is_shaped_like_openais(tools_gateway: GatewayProcess) -> None:
    body = {"model": "fixed", "messages": ASK, "tools": [WEATHER], "tool_choice": "required", "stream": True}
    body["stream_options"] = {"include_usage": True}
    with httpx.stream(
        "POST", tools_gateway.url + "/chat/completions", json=body, headers={"Authorization": f"Bearer {MASTER_KEY}"}
    ) as r:
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    first = chunks[0]["choices"][0]["delta"]
    header = first["tool_calls"][0]
    assert first["role"] == "assistant" and first["content"] is None
    assert header["index"] == 0 and header["id"].startswith("call_") and header["type"] == "function"
    assert header["function"] == {"name": "get_weather", "arguments": ""}
    middle = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks[1:-2]]
    assert len(middle) > 3 and all(set(d) == {"index", "function"} and d["index"] == 0 for d in middle)
    assert json.loads("".join(d["function"]["arguments"] for d in middle)) == {"city": "Paris", "unit": "celsius"}
    assert chunks[-2]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "tool_calls"}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == len(middle)


def test_the_sdk_stream_helper_assembles_the_call(client: openai.OpenAI) -> None:
    with client.chat.completions.stream(
        model="echo",
        messages=[{"role": "user", "content": "Save the city of Paris."}],
        tools=[openai.pydantic_function_tool(City, name="save_city")],
    ) as stream:
        final = stream.get_final_completion()
    call = final.choices[0].message.tool_calls[0]
    assert call.function.name == "save_city" and call.function.parsed_arguments.name == "Paris"


def test_structured_output(client: openai.OpenAI) -> None:
    parsed = client.chat.completions.parse(
        model="echo", messages=[{"role": "user", "content": "Describe Lisbon."}], response_format=City
    )
    city = parsed.choices[0].message.parsed
    assert city == City(name="Lisbon", country="Lisbon", population=1, coastal=True, districts=["Lisbon"])
    with client.chat.completions.stream(model="echo", messages=ASK, response_format=City) as stream:
        assert stream.get_final_completion().choices[0].message.parsed.name == "Paris"
    loose = client.chat.completions.create(model="echo", messages=ASK, response_format={"type": "json_object"})
    assert json.loads(loose.choices[0].message.content) == {
        "reply": "This is a mock reply from Lockgate. You said: " + ASK[0]["content"]
    }


def test_tools_through_the_messages_ingress(tools_gateway: GatewayProcess) -> None:
    claude = anthropic.Anthropic(base_url=tools_gateway.base_url, api_key=MASTER_KEY, max_retries=0)
    tool = {"name": "get_weather", "input_schema": WEATHER["function"]["parameters"]}
    first = claude.messages.create(model="echo", max_tokens=100, messages=ASK, tools=[tool])
    use = next(b for b in first.content if b.type == "tool_use")
    assert first.stop_reason == "tool_use" and use.name == "get_weather" and use.input == {"city": "Paris", "unit": "celsius"}
    with claude.messages.stream(model="echo", max_tokens=100, messages=ASK, tools=[tool]) as stream:
        streamed = stream.get_final_message()
    assert [b.input for b in streamed.content if b.type == "tool_use"] == [use.input] and streamed.stop_reason == "tool_use"
    answer = [{"type": "tool_result", "tool_use_id": use.id, "content": "18 degrees"}]
    history = [*ASK, {"role": "assistant", "content": [use.model_dump()]}, {"role": "user", "content": answer}]
    final = claude.messages.create(model="echo", max_tokens=100, messages=history, tools=[tool])
    assert final.content[0].text == "This is a mock reply from Lockgate. The tool get_weather returned: 18 degrees"


def test_tools_through_the_responses_ingress(client: openai.OpenAI) -> None:
    tool = {"type": "function", "name": "get_weather", "parameters": WEATHER["function"]["parameters"], "strict": False}
    first = client.responses.create(model="echo", input=ASK[0]["content"], tools=[tool])
    call = next(item for item in first.output if item.type == "function_call")
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris", "unit": "celsius"}
    with client.responses.stream(model="echo", input=ASK[0]["content"], tools=[tool]) as stream:
        streamed = stream.get_final_response()
    assert [json.loads(i.arguments) for i in streamed.output if i.type == "function_call"] == [
        {"city": "Paris", "unit": "celsius"}
    ]
    final = client.responses.create(
        model="echo",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "18 degrees"}],
        tools=[tool],
    )
    assert final.output_text == "This is a mock reply from Lockgate. The tool get_weather returned: 18 degrees"
    shaped = client.responses.parse(model="echo", input="Describe Lisbon.", text_format=City)
    assert shaped.output_parsed.name == "Lisbon"
