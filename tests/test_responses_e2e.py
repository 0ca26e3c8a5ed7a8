"""End to end: the official `openai` SDK's client.responses -> `lockgate serve` /v1/responses ->
the fake OpenAI upstream, the fake Anthropic upstream and the mock (all translated through chat),
with the response store on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import basic_config
from tests.dbs import module_db_url  # noqa: F401
from tests.fakes.anthropic_upstream import UPSTREAM_KEY as ANTHROPIC_KEY
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import FakeOpenAI
from tests.harness import MASTER_KEY, GatewayProcess
from tests.responses_support import check_stream, parse_sse
from tests.usage_helpers import fetch, usage_config

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather now",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "strict": True,
}


@pytest.fixture(scope="module")
def gateway(
    fake_openai_server: FakeOpenAI,
    fake_anthropic_server: FakeAnthropic,
    module_db_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GatewayProcess]:
    config = basic_config(fake_openai_server)
    anthropic = {
        "provider": "anthropic",
        "model": "claude-upstream-1",
        "api_base": fake_anthropic_server.url,
        "api_key": ANTHROPIC_KEY,
        "max_tokens_default": 512,
    }
    config["models"].append({"name": "claude-test", "deployments": [anthropic]})
    gw = GatewayProcess(usage_config(config, module_db_url), tmp_path_factory.mktemp("responses-gw")).start()
    gw.db_url = module_db_url  # type: ignore[attr-defined]
    yield gw
    gw.stop()


@pytest.fixture
def client(gateway: GatewayProcess, fake_openai: FakeOpenAI) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url, api_key=MASTER_KEY, max_retries=0, timeout=20)


def new_key(gateway: GatewayProcess) -> str:
    created = httpx.post(
        f"{gateway.base_url}/admin/keys", json={"name": "responses-other"}, headers={"authorization": f"Bearer {MASTER_KEY}"}
    )
    assert created.status_code == 201, created.text
    return str(created.json()["key"])


def test_text_with_instructions_and_echoed_fields(client: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    response = client.responses.create(
        model="gpt-test", input="Hi", instructions="Be brief.", metadata={"ticket": "7"}, temperature=0.3
    )
    assert response.id.startswith("resp_") and response.object == "response" and response.model == "gpt-test"
    assert response.status == "completed" and response.output_text == "Hello from the fake upstream."
    assert response.metadata == {"ticket": "7"} and response.instructions == "Be brief." and response.temperature == 0.3
    usage = response.usage
    assert usage is not None and (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (9, 7, 16)
    assert usage.input_tokens_details.cached_tokens == 0 and usage.output_tokens_details.reasoning_tokens == 0
    sent = fake_openai.requests[-1].body
    assert sent["model"] == "upstream-model" and sent["temperature"] == 0.3
    assert sent["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]


def test_raw_stream_event_order(client: openai.OpenAI, gateway: GatewayProcess) -> None:
    body = {"model": "gpt-test", "input": "Hi", "stream": True}
    raw = httpx.post(f"{gateway.url}/responses", json=body, headers={"authorization": f"Bearer {MASTER_KEY}"}, timeout=20)
    assert raw.status_code == 200 and raw.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(raw.content)
    final = check_stream(events)  # created first, sequence 0..n-1, indexes dense, one terminal event
    assert events[-1]["type"] == "response.completed"
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert deltas == final["output"][0]["content"][0]["text"] == "Hello from the fake upstream."
    assert final["usage"]["input_tokens"] == 9 and final["usage"]["output_tokens"] == 7


def test_stream_helper_final_response(client: openai.OpenAI) -> None:
    texts = []
    with client.responses.stream(model="gpt-test", input="Hi") as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                texts.append(event.delta)
        final = stream.get_final_response()
    assert "".join(texts) == final.output_text == "Hello from the fake upstream."
    created = list(client.responses.create(model="gpt-test", input="Hi", stream=True))
    assert created[0].type == "response.created" and created[-1].type == "response.completed"
    assert {e.response.id for e in created if hasattr(e, "response")} == {created[0].response.id}


@pytest.mark.parametrize("stream", [False, True])
def test_tools_round_trip(client: openai.OpenAI, fake_openai: FakeOpenAI, stream: bool) -> None:
    fake_openai.reply.content = None
    fake_openai.reply.tool_calls = [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": json.dumps({"city": "Paris"})}},
        {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": json.dumps({"city": "Rome"})}},
    ]
    if stream:
        with client.responses.stream(model="gpt-test", input="Weather?", tools=[WEATHER]) as s:  # type: ignore[list-item]
            first = s.get_final_response()
    else:
        first = client.responses.create(model="gpt-test", input="Weather?", tools=[WEATHER], tool_choice="required")  # type: ignore[list-item]
    calls = [item for item in first.output if item.type == "function_call"]
    assert [(c.call_id, c.name, json.loads(c.arguments)) for c in calls] == [
        ("call_1", "get_weather", {"city": "Paris"}),
        ("call_2", "get_weather", {"city": "Rome"}),
    ]
    sent = fake_openai.requests[-1].body
    assert sent["tools"][0] == {
        "type": "function",
        "function": {k: WEATHER[k] for k in ("name", "description", "parameters", "strict")},
    }

    fake_openai.reply.tool_calls = None
    fake_openai.reply.content = "Paris 18C, Rome 25C."
    outputs = [
        {"type": "function_call_output", "call_id": c.call_id, "output": "18C" if i == 0 else "25C"} for i, c in enumerate(calls)
    ]
    second = client.responses.create(
        model="gpt-test",
        input=[{"role": "user", "content": "Weather?"}, *[c.model_dump(exclude_none=True) for c in calls], *outputs],  # type: ignore[list-item]
        tools=[WEATHER],  # type: ignore[list-item]
        store=False,
    )
    assert second.output_text == "Paris 18C, Rome 25C."
    sent = fake_openai.requests[-1].body
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "tool", "tool"]
    assert [c["id"] for c in sent["messages"][1]["tool_calls"]] == ["call_1", "call_2"]
    assert sent["messages"][2] == {"role": "tool", "tool_call_id": "call_1", "content": "18C"}


@pytest.mark.parametrize("stream", [False, True])
def test_previous_response_id_chain(client: openai.OpenAI, fake_openai: FakeOpenAI, stream: bool) -> None:
    fake_openai.reply.content = "Nice to meet you, Ada."
    first = client.responses.create(model="gpt-test", input="My name is Ada.", instructions="Turn one rules.")
    fake_openai.reply.content = "You are Ada."
    if stream:
        events = list(client.responses.create(model="gpt-test", input="Who am I?", previous_response_id=first.id, stream=True))
        second = events[-1].response  # type: ignore[union-attr]
    else:
        second = client.responses.create(model="gpt-test", input="Who am I?", previous_response_id=first.id)
    assert second.previous_response_id == first.id and second.output_text == "You are Ada."
    # The earlier turn's instructions are not carried over (as at OpenAI).
    assert fake_openai.requests[-1].body["messages"] == [
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Nice to meet you, Ada."},
        {"role": "user", "content": "Who am I?"},
    ]
    fake_openai.reply.content = "Still Ada."
    third = client.responses.create(model="gpt-test", input="Sure?", previous_response_id=second.id)
    assert [m["content"] for m in fake_openai.requests[-1].body["messages"]] == [
        "My name is Ada.",
        "Nice to meet you, Ada.",
        "Who am I?",
        "You are Ada.",
        "Sure?",
    ]
    assert third.status == "completed"


def test_retrieve_input_items_delete_and_another_keys_404(client: openai.OpenAI, gateway: GatewayProcess) -> None:
    items = [{"role": "user", "content": f"part {i}"} for i in range(5)]
    created = client.responses.create(model="gpt-test", input=items)  # type: ignore[arg-type]
    assert client.responses.retrieve(created.id).model_dump() == created.model_dump()

    listed = client.responses.input_items.list(created.id)
    texts = [i.content[0].text for i in listed.data]  # type: ignore[union-attr]
    assert texts == [f"part {i}" for i in reversed(range(5))]  # order desc by default
    assert listed.first_id == listed.data[0].id and listed.last_id == listed.data[-1].id and listed.has_more is False
    page = client.responses.input_items.list(created.id, limit=2, order="asc")
    assert [i.content[0].text for i in page.data] == ["part 0", "part 1"] and page.has_more is True  # type: ignore[union-attr]
    rest = client.responses.input_items.list(created.id, limit=2, order="asc", after=page.last_id)
    assert [i.content[0].text for i in rest.data] == ["part 2", "part 3"]  # type: ignore[union-attr]
    with pytest.raises(openai.BadRequestError) as bad:
        client.responses.input_items.list(created.id, limit=101)
    assert bad.value.body["param"] == "limit"  # type: ignore[index]

    other = openai.OpenAI(base_url=gateway.url, api_key=new_key(gateway), max_retries=0, timeout=20)
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.input_items.list(created.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.delete(created.id)
    with pytest.raises(openai.BadRequestError) as chained:
        other.responses.create(model="gpt-test", input="hi", previous_response_id=created.id)
    assert chained.value.code == "previous_response_not_found"

    client.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)


def test_store_false_keeps_nothing(client: openai.OpenAI) -> None:
    unstored = client.responses.create(model="gpt-test", input="Hi", store=False)
    assert unstored.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unstored.id)
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="gpt-test", input="Again", previous_response_id=unstored.id)
    assert info.value.code == "previous_response_not_found" and info.value.body["param"] == "previous_response_id"  # type: ignore[index]


def test_anthropic_deployment(client: openai.OpenAI, fake_anthropic: FakeAnthropic) -> None:
    response = client.responses.create(model="claude-test", input="Hi", instructions="Be brief.", max_output_tokens=64)
    assert response.status == "completed" and response.output_text == "Hello from the fake Anthropic upstream."
    assert response.usage is not None and response.usage.input_tokens == 21 and response.usage.output_tokens == 9
    with client.responses.stream(model="claude-test", input="Hi", previous_response_id=response.id) as stream:
        final = stream.get_final_response()
    assert final.output_text == "Hello from the fake Anthropic upstream."


def test_mock_deployment(client: openai.OpenAI) -> None:
    response = client.responses.create(model="mock-gpt", input="Hi")
    assert response.status == "completed" and response.output_text


def test_errors_in_openais_shape(client: openai.OpenAI, gateway: GatewayProcess) -> None:
    with pytest.raises(openai.BadRequestError) as hosted:
        client.responses.create(model="gpt-test", input="Hi", tools=[{"type": "web_search"}])  # type: ignore[list-item]
    assert hosted.value.body["param"] == "tools" and hosted.value.body["type"] == "invalid_request_error"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError) as unknown:
        client.responses.create(model="no-such-model", input="Hi")
    assert unknown.value.code == "model_not_found"
    nobody = openai.OpenAI(base_url=gateway.url, api_key="lg-wrong-key-000000", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        nobody.responses.create(model="gpt-test", input="Hi")
    bad = httpx.post(f"{gateway.url}/responses", content=b"{not json", headers={"authorization": f"Bearer {MASTER_KEY}"})
    assert bad.status_code == 400 and set(bad.json()["error"]) == {"message", "type", "param", "code"}


def test_usage_is_recorded_with_endpoint_responses(client: openai.OpenAI, gateway: GatewayProcess) -> None:
    response = client.responses.create(model="gpt-test", input="Count me", store=False)
    streamed = list(client.responses.create(model="gpt-test", input="Count me too", store=False, stream=True))
    assert streamed[-1].type == "response.completed"
    url = gateway.db_url  # type: ignore[attr-defined]
    import time

    deadline = time.time() + 10
    rows: list[dict[str, Any]] = []
    while time.time() < deadline:
        rows = fetch(
            url, "SELECT * FROM usage_records WHERE endpoint = 'responses' AND model = 'gpt-test' ORDER BY started_at DESC"
        )[:2]
        if len(rows) >= 2 and any(r["streamed"] for r in rows):
            break
        time.sleep(0.2)
    assert any(r["streamed"] for r in rows) and any(not r["streamed"] for r in rows)
    assert all(r["model"] == "gpt-test" for r in rows) and response.usage is not None
    assert any(r["prompt_tokens"] == 9 and r["completion_tokens"] == 7 for r in rows)


def test_mid_stream_break_ends_in_response_failed_and_is_not_stored(
    client: openai.OpenAI, gateway: GatewayProcess, fake_openai: FakeOpenAI
) -> None:
    fake_openai.faults.append({"drop_after": 2})
    raw = httpx.post(
        f"{gateway.url}/responses",
        json={"model": "gpt-test", "input": "Hi", "stream": True},
        headers={"authorization": f"Bearer {MASTER_KEY}"},
        timeout=20,
    )
    events = parse_sse(raw.content)
    final = check_stream(events)
    assert events[-1]["type"] == "response.failed" and final["status"] == "failed" and final["error"]["code"]
    assert not any(e["type"] == "response.completed" for e in events)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(final["id"])  # a failed turn is not something to continue from
