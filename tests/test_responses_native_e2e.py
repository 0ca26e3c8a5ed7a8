"""End to end: the official `openai` SDK's client.responses -> `lockgate serve` /v1/responses -> two fake
OpenAI upstreams serving their own /v1/responses (deployments with `responses: native`), with the
response store and usage records on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import openai_deployment
from tests.dbs import module_db_url  # noqa: F401
from tests.fakes.openai_upstream import UPSTREAM_KEY, FakeOpenAI
from tests.harness import MASTER_KEY, GatewayProcess
from tests.responses_support import check_stream, parse_sse
from tests.usage_helpers import fetch, usage_config

AUTH = {"authorization": f"Bearer {MASTER_KEY}"}
TEXT = "Hello from the fake upstream."


@pytest.fixture(scope="module")
def fake_b_server() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_b(fake_b_server: FakeOpenAI) -> Iterator[FakeOpenAI]:
    fake_b_server.reset()
    yield fake_b_server
    fake_b_server.reset()


@pytest.fixture(scope="module")
def gateway(
    fake_openai_server: FakeOpenAI, fake_b_server: FakeOpenAI, module_db_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    native_a = openai_deployment(fake_openai_server, id="native-a", responses="native", first_byte_timeout_s=5)
    native_b = {
        **openai_deployment(fake_b_server, id="native-b", responses="native", first_byte_timeout_s=5),
        "model": "upstream-b",
        "priority": 1,
    }
    config = {
        "auth": {"master_key": MASTER_KEY},
        "router": {"max_attempts": 2, "cooldown": {"failures": 1000}},
        "models": [
            {"name": "gpt-native", "deployments": [native_a, native_b]},
            {"name": "gpt-solo", "deployments": [{**native_a, "id": "solo"}]},
            {"name": "gpt-translated", "deployments": [openai_deployment(fake_openai_server, id="translated")]},
        ],
    }
    gw = GatewayProcess(usage_config(config, module_db_url), tmp_path_factory.mktemp("responses-native-gw")).start()
    gw.db_url = module_db_url  # type: ignore[attr-defined]
    yield gw
    gw.stop()


@pytest.fixture
def client(gateway: GatewayProcess, fake_openai: FakeOpenAI, fake_b: FakeOpenAI) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url, api_key=MASTER_KEY, max_retries=0, timeout=20)


def new_key(gateway: GatewayProcess) -> str:
    created = httpx.post(f"{gateway.base_url}/admin/keys", json={"name": "native-other"}, headers=AUTH)
    assert created.status_code == 201, created.text
    return str(created.json()["key"])


def usage_row(gateway: GatewayProcess, request_id: str, timeout_s: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rows = fetch(gateway.db_url, "SELECT * FROM usage_records WHERE request_id = :rid", rid=request_id)  # type: ignore[attr-defined]
        if rows:
            return rows[0]
        time.sleep(0.1)
    raise AssertionError(f"no usage row for {request_id}")


def stream_raw(gateway: GatewayProcess, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{gateway.url}/responses", json={**body, "stream": True}, headers=AUTH, timeout=20)


def test_text_passes_through_with_the_model_rewritten_both_ways(client: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    web_search = {"type": "web_search", "search_context_size": "low"}
    raw = client.responses.with_raw_response.create(
        model="gpt-native",
        input="Hi",
        tools=[web_search],  # type: ignore[list-item]  # a hosted tool: fine on a native deployment
        extra_body={"lockgate_future_field": {"nested": [1, "two"]}, "prompt_cache_retention": "24h"},
    )
    response = raw.parse()
    assert response.model == "gpt-native" and response.output_text == TEXT and response.status == "completed"
    seen = fake_openai.requests[-1]
    assert seen.path == "/v1/responses" and seen.headers["Authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert seen.body == {
        "model": "upstream-model",
        "input": "Hi",
        "tools": [web_search],
        "lockgate_future_field": {"nested": [1, "two"]},
        "prompt_cache_retention": "24h",
    }
    # The upstream's id is the client's (the next turn's previous_response_id goes upstream as it is).
    assert response.id in fake_openai.responses.stored
    usage = response.usage
    assert usage is not None and (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (9, 7, 16)
    assert raw.headers["x-lockgate-deployment"] == "native-a"


def test_stream_relayed_event_by_event(client: openai.OpenAI, gateway: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    texts = []
    with client.responses.stream(model="gpt-native", input="Hi") as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                texts.append(event.delta)
        final = stream.get_final_response()
    assert "".join(texts) == final.output_text == TEXT and final.model == "gpt-native"
    assert fake_openai.requests[-1].body == {"model": "upstream-model", "input": "Hi", "stream": True}

    raw = stream_raw(gateway, {"model": "gpt-native", "input": "Hi"})
    assert raw.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(raw.content)
    check_stream(events)  # the upstream's own numbering and order, untouched
    assert events[-1]["type"] == "response.completed"
    assert {e["response"]["model"] for e in events if "response" in e} == {"gpt-native"}
    assert [e["type"] for e in events][:2] == ["response.created", "response.in_progress"]
    row = usage_row(gateway, raw.headers["x-request-id"])
    assert (row["endpoint"], row["model"], row["status"], row["streamed"]) == ("responses", "gpt-native", 200, True)
    assert (row["prompt_tokens"], row["completion_tokens"], row["usage_estimated"]) == (9, 7, False)
    assert row["deployment"] == "native-a" and row["upstream_model"] == "upstream-model"


@pytest.mark.parametrize("stream", [False, True])
def test_three_turn_chain_passes_previous_response_id_through(
    client: openai.OpenAI, fake_openai: FakeOpenAI, stream: bool
) -> None:
    fake_openai.reply.content = "Nice to meet you, Ada."
    first = client.responses.create(model="gpt-native", input="My name is Ada.", instructions="Turn one rules.")
    fake_openai.reply.content = "You are Ada."
    if stream:
        with client.responses.stream(model="gpt-native", input="Who am I?", previous_response_id=first.id) as s:
            second = s.get_final_response()
    else:
        second = client.responses.create(model="gpt-native", input="Who am I?", previous_response_id=first.id)
    assert fake_openai.requests[-1].body["previous_response_id"] == first.id
    assert second.previous_response_id == first.id and second.output_text == "You are Ada."
    fake_openai.reply.content = "Still Ada."
    third = client.responses.create(model="gpt-native", input="Sure?", previous_response_id=second.id)
    assert fake_openai.requests[-1].body == {"model": "upstream-model", "input": "Sure?", "previous_response_id": second.id}
    # The upstream resolved the chain from its own state: all three turns, in order.
    said = [part["text"] for item in fake_openai.conversations[-1] for part in item["content"]]
    assert said == ["My name is Ada.", "Nice to meet you, Ada.", "Who am I?", "You are Ada.", "Sure?"]
    assert third.output_text == "Still Ada."
    # Lockgate keeps its own copy: retrieve and input_items work without asking the upstream.
    before = len(fake_openai.requests)
    assert client.responses.retrieve(third.id).model_dump() == third.model_dump()
    items = client.responses.input_items.list(third.id)
    assert [i.content[0].text for i in items.data] == ["Sure?"]  # type: ignore[union-attr]
    assert len(fake_openai.requests) == before


def test_another_keys_chain_and_reads_are_refused(
    client: openai.OpenAI, gateway: GatewayProcess, fake_openai: FakeOpenAI
) -> None:
    mine = client.responses.create(model="gpt-native", input="Secret turn")
    other = openai.OpenAI(base_url=gateway.url, api_key=new_key(gateway), max_retries=0, timeout=20)
    before = len(fake_openai.requests)
    with pytest.raises(openai.BadRequestError) as chained:
        other.responses.create(model="gpt-native", input="hi", previous_response_id=mine.id)
    assert chained.value.code == "previous_response_not_found"
    assert chained.value.body["param"] == "previous_response_id"  # type: ignore[index]
    for call in (other.responses.retrieve, other.responses.input_items.list, other.responses.delete):
        with pytest.raises(openai.NotFoundError):
            call(mine.id)
    assert len(fake_openai.requests) == before  # refused by the gateway: the upstream's state was never reached
    client.responses.delete(mine.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(mine.id)
    # The upstream's own copy is deleted too, with the deployment's credential.
    assert mine.id not in fake_openai.responses.stored
    assert fake_openai.requests[-1].path == f"/v1/responses/{mine.id}"
    assert fake_openai.requests[-1].headers["Authorization"] == f"Bearer {UPSTREAM_KEY}"


def test_chain_is_pinned_to_the_deployment_that_holds_it(
    client: openai.OpenAI, fake_openai: FakeOpenAI, fake_b: FakeOpenAI, gateway: GatewayProcess
) -> None:
    fake_openai.faults.append({"status": 500})  # native-a (preferred) fails before its first byte
    first = client.responses.with_raw_response.create(model="gpt-native", input="Remember 42.")
    assert first.headers["x-lockgate-deployment"] == "native-b" and first.headers["x-lockgate-attempts"] == "2"
    held = first.parse()
    assert held.id in fake_b.responses.stored and held.model == "gpt-native"
    a_before = len(fake_openai.requests)
    # native-a is healthy and preferred again, but only native-b holds the response.
    second = client.responses.with_raw_response.create(model="gpt-native", input="What number?", previous_response_id=held.id)
    assert second.headers["x-lockgate-deployment"] == "native-b"
    assert fake_b.requests[-1].body == {"model": "upstream-b", "input": "What number?", "previous_response_id": held.id}
    assert len(fake_openai.requests) == a_before
    # A failing holder is retried in place, never failed over to a deployment without the state.
    fake_b.faults.append({"status": 503})
    third = client.responses.with_raw_response.create(model="gpt-native", input="Again?", previous_response_id=held.id)
    assert third.headers["x-lockgate-deployment"] == "native-b" and third.headers["x-lockgate-attempts"] == "2"
    assert len(fake_openai.requests) == a_before


def test_failover_before_the_first_byte_of_a_stream(
    client: openai.OpenAI, gateway: GatewayProcess, fake_openai: FakeOpenAI, fake_b: FakeOpenAI
) -> None:
    fake_openai.faults.append({"status": 502})
    raw = stream_raw(gateway, {"model": "gpt-native", "input": "Hi"})
    assert raw.status_code == 200 and raw.headers["x-lockgate-deployment"] == "native-b"
    events = parse_sse(raw.content)
    final = check_stream(events)
    assert final["status"] == "completed" and final["model"] == "gpt-native"
    assert fake_b.requests[-1].body["model"] == "upstream-b"
    row = usage_row(gateway, raw.headers["x-request-id"])
    assert row["status"] == 200 and row["attempts"] == 2 and row["deployment"] == "native-b"
    failed = usage_row(gateway, raw.headers["x-request-id"] + ".1")
    assert failed["deployment"] == "native-a" and failed["status"] >= 500


@pytest.mark.parametrize("fault", [{"drop_after": 2}, {"error_after": 2}, {"end_after": 2}, {"failed_after": 2}])
def test_mid_stream_break_ends_in_response_failed(
    client: openai.OpenAI, gateway: GatewayProcess, fake_openai: FakeOpenAI, fault: dict[str, Any]
) -> None:
    fake_openai.reply.content = "one two three four five six"
    fake_openai.faults.append(fault)
    raw = stream_raw(gateway, {"model": "gpt-solo", "input": "Hi"})
    events = parse_sse(raw.content)
    final = check_stream(events)  # numbering continues into the gateway's own response.failed
    assert events[-1]["type"] == "response.failed" and final["status"] == "failed" and final["error"]["code"]
    assert final["id"] == events[0]["response"]["id"] and final["model"] == "gpt-solo"
    assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == "one two "
    row = usage_row(gateway, raw.headers["x-request-id"])
    assert row["endpoint"] == "responses" and row["status"] >= 500 and bool(row["partial"])
    assert row["completion_tokens"] > 0 and bool(row["usage_estimated"])  # cut short: counted from what was relayed
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(final["id"])  # a failed turn is not stored


def test_client_disconnect_cancels_the_upstream_and_is_recorded(gateway: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    fake_openai.reply.content = " ".join(f"w{i}" for i in range(200))
    fake_openai.reply.chunk_delay_s = 0.05
    body = {"model": "gpt-solo", "input": "Long, please", "stream": True}
    with httpx.stream("POST", f"{gateway.url}/responses", json=body, headers=AUTH, timeout=20) as resp:
        request_id = resp.headers["x-request-id"]
        seen = 0
        for line in resp.iter_lines():
            if line.startswith("event: response.output_text.delta"):
                seen += 1
                if seen == 3:
                    break
    assert fake_openai.stream_closed.wait(10), "the upstream stream was not cancelled"
    assert fake_openai.disconnects == 1
    row = usage_row(gateway, request_id)
    assert row["status"] == 499 and bool(row["partial"]) and row["endpoint"] == "responses"
    assert row["completion_tokens"] > 0 and bool(row["usage_estimated"])


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 400, "message": "Invalid 'input': bad item.", "param": "input", "code": "invalid_value"},
        {"status": 429, "message": "Rate limit reached.", "type": "requests", "code": "rate_limit_exceeded"},
        {"status": 500, "message": "The server had an error."},
    ],
)
def test_upstream_errors_map_like_chat(client: openai.OpenAI, fake_openai: FakeOpenAI, fault: dict[str, Any]) -> None:
    attempts = 1 if fault["status"] == 400 else 2  # gpt-solo retries a retryable error in place once
    fault = {**fault, "headers": {"retry-after": "0"}} if fault["status"] == 429 else fault
    errors = []
    for call in (
        lambda: client.responses.with_raw_response.create(model="gpt-solo", input="Hi"),
        lambda: client.chat.completions.with_raw_response.create(model="gpt-solo", messages=[{"role": "user", "content": "Hi"}]),
    ):
        fake_openai.faults[:] = [fault] * attempts
        with pytest.raises(openai.APIStatusError) as info:
            call()
        errors.append(info.value)
    assert fake_openai.requests[0].path == "/v1/responses" and fake_openai.requests[-1].path == "/v1/chat/completions"
    responses_err, chat_err = errors
    assert type(responses_err) is type(chat_err)
    assert responses_err.status_code == chat_err.status_code and responses_err.body == chat_err.body
    assert set(responses_err.body) == {"message", "type", "param", "code"}  # type: ignore[arg-type]
    assert responses_err.body["message"] == fault["message"]  # type: ignore[index]
    if fault["status"] == 400:
        assert responses_err.status_code == 400 and responses_err.body["param"] == "input"  # type: ignore[index]
    if fault["status"] == 429:
        assert isinstance(responses_err, openai.RateLimitError) and "retry-after" in responses_err.response.headers
        assert responses_err.response.headers["retry-after"] == chat_err.response.headers["retry-after"]
    if fault["status"] == 500:
        assert responses_err.status_code >= 500


def test_encrypted_reasoning_round_trips(client: openai.OpenAI, gateway: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    fake_openai.reply.reasoning = "Thinking it over."
    first = client.responses.create(
        model="gpt-native", input="Think.", store=False, include=["reasoning.encrypted_content"], reasoning={"effort": "low"}
    )
    reasoning = first.output[0]
    assert reasoning.type == "reasoning" and reasoning.encrypted_content and reasoning.encrypted_content.startswith("gAAAA")
    replay = reasoning.model_dump(exclude_none=True)
    client.responses.create(
        model="gpt-native",
        input=[{"role": "user", "content": "Think."}, replay, {"role": "user", "content": "And now?"}],  # type: ignore[list-item]
        store=False,
        include=["reasoning.encrypted_content"],
    )
    assert fake_openai.requests[-1].body["input"][1] == replay  # exactly as the upstream gave it

    stored = client.responses.create(model="gpt-native", input="Think.", include=["reasoning.encrypted_content"])
    with_it = client.responses.retrieve(stored.id, include=["reasoning.encrypted_content"])
    assert with_it.output[0].encrypted_content == stored.output[0].encrypted_content  # type: ignore[union-attr]
    assert client.responses.retrieve(stored.id).output[0].encrypted_content is None  # type: ignore[union-attr]
    bad = httpx.get(f"{gateway.url}/responses/{stored.id}", params={"include[]": "reasoning.everything"}, headers=AUTH)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "include"


def test_chain_from_a_translated_turn_is_sent_as_input(client: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    fake_openai.reply.content = "Noted: blue."
    first = client.responses.create(model="gpt-translated", input="My colour is blue.")
    assert fake_openai.requests[-1].path == "/v1/chat/completions"
    fake_openai.reply.content = "Blue."
    second = client.responses.create(model="gpt-native", input="My colour?", previous_response_id=first.id)
    sent = fake_openai.requests[-1]
    assert sent.path == "/v1/responses" and "previous_response_id" not in sent.body  # the upstream never saw that id
    assert [(i.get("role"), i["content"][0]["text"]) for i in sent.body["input"]] == [
        ("user", "My colour is blue."),
        ("assistant", "Noted: blue."),
        ("user", "My colour?"),
    ]
    assert second.output_text == "Blue."
    third = client.responses.create(model="gpt-translated", input="Sure?", previous_response_id=second.id)
    assert third.status == "completed"
    assert [m["content"] for m in fake_openai.requests[-1].body["messages"]] == [
        "My colour is blue.",
        "Noted: blue.",
        "My colour?",
        "Blue.",
        "Sure?",
    ]


def test_translated_deployment_still_refuses_hosted_tools(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="gpt-translated", input="Hi", tools=[{"type": "web_search"}])  # type: ignore[list-item]
    assert info.value.body["param"] == "tools"  # type: ignore[index]
