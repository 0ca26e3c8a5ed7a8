"""End to end: the official openai client against a real `lockgate serve` in front of the fake upstream."""

from __future__ import annotations

import base64
import json
import struct
import threading
import time

import httpx
import openai
import pytest

from tests.fakes.openai_upstream import UPSTREAM_KEY, FakeOpenAI
from tests.harness import MASTER_KEY, GatewayProcess

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]
CALL = {
    "id": "call_abc123",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "c"}'},
}


def test_chat_non_stream_rewrites_model_and_passes_every_field(client: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    resp = client.chat.completions.with_raw_response.create(
        model="gpt-test",
        messages=[{"role": "user", "content": "Hi"}],
        temperature=0.3,
        extra_body={"some_future_param": {"x": 1}},
    )
    completion = resp.parse()
    assert completion.model == "gpt-test"
    assert completion.choices[0].message.content == "Hello from the fake upstream."
    assert completion.usage is not None and completion.usage.prompt_tokens == 9 and completion.usage.completion_tokens == 7
    assert resp.headers["x-request-id"].startswith("req_")
    assert resp.headers["x-lockgate-attempts"] == "1"
    seen = fake_openai.requests[-1]
    assert seen.body["model"] == "upstream-model"
    assert seen.body["temperature"] == 0.3
    assert seen.body["some_future_param"] == {"x": 1}
    # The upstream gets its own key, never the caller's.
    assert seen.headers["Authorization"] == f"Bearer {UPSTREAM_KEY}"


def test_chat_stream_asks_upstream_for_usage_but_hides_it_unless_asked(client: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    chunks = list(client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "Hi"}], stream=True))
    assert fake_openai.requests[-1].body["stream_options"] == {"include_usage": True}
    assert all(c.model == "gpt-test" for c in chunks)
    assert all(c.choices for c in chunks), "no empty-choices chunk without include_usage"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello from the fake upstream."
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)


def test_chat_stream_with_usage_chunk(client: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="gpt-test",
            messages=[{"role": "user", "content": "Hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (9, 7, 16)
    assert all(c.usage is None for c in chunks[:-1])


def test_tool_calls_both_ways(client: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    fake_openai.reply.content = None
    fake_openai.reply.tool_calls = [CALL]
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_abc123", "content": '{"temp": 21}'},
    ]
    completion = client.chat.completions.create(model="gpt-test", messages=messages, tools=TOOLS, tool_choice="auto")
    sent = fake_openai.requests[-1].body
    assert sent["tools"] == TOOLS and sent["messages"] == messages and sent["tool_choice"] == "auto"
    call = completion.choices[0].message.tool_calls[0]
    assert completion.choices[0].finish_reason == "tool_calls"
    assert call.id == "call_abc123" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris", "unit": "c"}

    # Streamed: fragments of the arguments arrive with their index and reassemble.
    args, names = "", []
    for chunk in client.chat.completions.create(model="gpt-test", messages=messages, tools=TOOLS, stream=True):
        for delta in chunk.choices[0].delta.tool_calls or []:
            assert delta.index == 0
            if delta.function.name:
                names.append(delta.function.name)
            args += delta.function.arguments or ""
    assert names == ["get_weather"]
    assert json.loads(args) == {"city": "Paris", "unit": "c"}


def test_legacy_completions(client: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    completion = client.completions.create(model="gpt-test", prompt="Say hi")
    assert completion.model == "gpt-test" and completion.choices[0].text == "Hello from the fake upstream."
    chunks = list(client.completions.create(model="gpt-test", prompt="Say hi", stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "Hello from the fake upstream."
    assert all(c.model == "gpt-test" for c in chunks)


def test_embeddings_float_and_base64(client: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    # The SDK asks for base64 by default and decodes it.
    result = client.embeddings.create(model="gpt-test", input=["a", "b"], dimensions=4)
    assert fake_openai.requests[-1].body["encoding_format"] == "base64"
    assert fake_openai.requests[-1].body["dimensions"] == 4
    assert [round(x, 4) for x in result.data[1].embedding] == [0.2, 0.4, 0.6, 0.8]
    floats = client.embeddings.create(model="gpt-test", input="a", encoding_format="float", dimensions=2)
    assert floats.data[0].embedding == [0.1, 0.2] and floats.model == "gpt-test"


def test_mock_embeddings_are_deterministic(client: openai.OpenAI) -> None:
    a = client.embeddings.create(model="mock-embedding", input="same text", dimensions=8).data[0].embedding
    b = (
        client.embeddings.create(model="mock-embedding", input="same text", encoding_format="float", dimensions=8)
        .data[0]
        .embedding
    )
    assert len(a) == 8 and all(abs(x - y) < 1e-6 for x, y in zip(a, b))
    assert abs(sum(x * x for x in a) - 1.0) < 1e-5


def test_models_list_and_retrieve(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids[:2] == ["gpt-test", "gpt-slow"] and "mock-gpt" in ids
    assert client.models.retrieve("mock-gpt").id == "mock-gpt"
    with pytest.raises(openai.NotFoundError) as err:
        client.models.retrieve("nope")
    assert err.value.body["code"] == "model_not_found"


# --- errors ------------------------------------------------------------------------------


def _post(
    gw: GatewayProcess, body: bytes | dict, key: str | None = MASTER_KEY, path: str = "/v1/chat/completions"
) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(gw.base_url + path, content=data, headers=headers, timeout=10)


def _assert_openai_error(resp: httpx.Response, status: int, code: str | None = None, param: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["x-request-id"].startswith("req_")
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["message"] and "Traceback" not in err["message"]
    if code is not None:
        assert err["code"] == code
    if param is not None:
        assert err["param"] == param
    return err


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        (b"[]", None),
        (b"", None),
        ({"model": "gpt-test"}, "messages"),
        ({"messages": [{"role": "user", "content": "hi"}]}, "model"),
        ({"model": "gpt-test", "messages": "hi"}, "messages"),
        ({"model": "gpt-test", "messages": []}, "messages"),
        ({"model": "gpt-test", "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"model": "gpt-test", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}, "temperature"),
        ({"model": "gpt-test", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}, "stream"),
        ({"model": 42, "messages": [{"role": "user", "content": "x"}]}, "model"),
    ],
)
def test_bad_requests_are_400_naming_the_param(shared_gateway: GatewayProcess, fake_openai: FakeOpenAI, body, param) -> None:
    err = _assert_openai_error(_post(shared_gateway, body), 400, param=param)
    assert err["type"] == "invalid_request_error"
    assert fake_openai.requests == [], "a bad request never reaches the upstream"


def test_bad_requests_on_other_endpoints(shared_gateway: GatewayProcess) -> None:
    _assert_openai_error(_post(shared_gateway, {"model": "gpt-test"}, path="/v1/completions"), 400, param="prompt")
    _assert_openai_error(_post(shared_gateway, {"model": "gpt-test", "input": 5}, path="/v1/embeddings"), 400, param="input")
    _assert_openai_error(
        _post(shared_gateway, {"model": "gpt-test", "input": "x", "encoding_format": "hex"}, path="/v1/embeddings"),
        400,
        param="encoding_format",
    )


def test_authentication_errors(shared_gateway: GatewayProcess) -> None:
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "x"}]}
    _assert_openai_error(_post(shared_gateway, body, key=None), 401, code="invalid_api_key")
    err = _assert_openai_error(_post(shared_gateway, body, key="sk-wrong-key-123456789"), 401, code="invalid_api_key")
    assert "sk-wrong" not in err["message"]
    client = openai.OpenAI(base_url=shared_gateway.url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "x"}])
    _assert_openai_error(httpx.get(shared_gateway.url + "/models"), 401)


def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="gpt-nope", messages=[{"role": "user", "content": "x"}])
    assert err.value.body["code"] == "model_not_found" and err.value.body["param"] == "model"


def test_body_over_the_limit_is_413(shared_gateway: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    big = {"model": "gpt-test", "messages": [{"role": "user", "content": "x" * 70_000}]}
    _assert_openai_error(_post(shared_gateway, big), 413)
    # Without a content-length (chunked upload) the limit holds too.
    data = json.dumps(big).encode()
    resp = httpx.post(
        shared_gateway.url + "/chat/completions",
        content=iter([data[i : i + 8192] for i in range(0, len(data), 8192)]),
        headers={"authorization": f"Bearer {MASTER_KEY}", "content-type": "application/json"},
    )
    _assert_openai_error(resp, 413)
    assert fake_openai.requests == []


def test_unknown_route_and_method(shared_gateway: GatewayProcess) -> None:
    _assert_openai_error(httpx.get(shared_gateway.base_url + "/v1/nothing-here"), 404)
    _assert_openai_error(httpx.get(shared_gateway.url + "/chat/completions"), 405)


def test_upstream_4xx_is_passed_on(client: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    fake_openai.faults.append(
        {"status": 400, "message": "max_tokens is too large", "param": "max_tokens", "code": "invalid_value"}
    )
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "x"}])
    assert err.value.body["message"] == "max_tokens is too large"
    assert err.value.body["param"] == "max_tokens"


def test_upstream_429_is_429_with_retry_after(client: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    fake_openai.faults.append(
        {"status": 429, "headers": {"retry-after": "7"}, "message": "slow down", "code": "rate_limit_exceeded"}
    )
    with pytest.raises(openai.RateLimitError) as err:
        client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "x"}])
    assert err.value.response.headers["retry-after"] == "7"


@pytest.mark.parametrize(("fault", "status"), [({"status": 500}, 502), ({"status": 503}, 503), ({"not_json": True}, 502)])
def test_upstream_failures_map_to_5xx(client: openai.OpenAI, fake_openai: FakeOpenAI, fault, status) -> None:
    fake_openai.faults.append(fault)
    with pytest.raises(openai.InternalServerError) as err:
        client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "x"}])
    assert err.value.status_code == status


def test_unreachable_upstream_is_503_and_timeout_is_504(client: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as err:
        client.chat.completions.create(model="gpt-dead", messages=[{"role": "user", "content": "x"}])
    assert err.value.status_code == 503
    fake_openai.faults.append({"hang_s": 2})
    with pytest.raises(openai.InternalServerError) as err:
        client.chat.completions.create(model="gpt-slow", messages=[{"role": "user", "content": "x"}])
    assert err.value.status_code == 504
    fake_openai.faults.append({"hang_s": 2})
    with pytest.raises(openai.InternalServerError) as err:
        client.chat.completions.create(model="gpt-slow", messages=[{"role": "user", "content": "x"}], stream=True)
    assert err.value.status_code == 504


def test_stream_that_breaks_ends_with_an_error_event(
    client: openai.OpenAI, fake_openai: FakeOpenAI, shared_gateway: GatewayProcess
) -> None:
    fake_openai.reply.content = "one two three four five six"
    fake_openai.faults.append({"drop_after": 3})
    received = []
    with pytest.raises(openai.APIError):
        for chunk in client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "x"}], stream=True):
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "one two three "


# --- streaming behaviour -------------------------------------------------------------------


def test_first_chunk_reaches_the_client_before_the_upstream_sends_the_second(
    shared_gateway: GatewayProcess, fake_openai: FakeOpenAI
) -> None:
    hold = threading.Event()
    fake_openai.hold_after_first = hold
    fake_openai.reply.content = "first second third"
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "x"}], "stream": True}
    contents = []
    try:
        with httpx.stream(
            "POST",
            shared_gateway.url + "/chat/completions",
            json=body,
            headers={"authorization": f"Bearer {MASTER_KEY}"},
            timeout=httpx.Timeout(5.0),
        ) as resp:
            assert resp.headers["content-type"].startswith("text/event-stream")
            for line in resp.iter_lines():
                if not line.startswith("data: {"):
                    continue
                content = json.loads(line[6:])["choices"][0]["delta"].get("content")
                if content:
                    contents.append(content)
                    if content == "first ":
                        # Only now may the upstream go on: had the gateway buffered, we would never get here.
                        assert not hold.is_set()
                        hold.set()
    finally:
        hold.set()
    assert contents == ["first ", "second ", "third"]


def test_client_disconnect_cancels_the_upstream_request(shared_gateway: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    fake_openai.reply.content = " ".join(f"w{i}" for i in range(200))
    fake_openai.reply.chunk_delay_s = 0.05
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "x"}], "stream": True}
    with httpx.stream(
        "POST", shared_gateway.url + "/chat/completions", json=body, headers={"authorization": f"Bearer {MASTER_KEY}"}, timeout=5
    ) as resp:
        for line in resp.iter_lines():
            if '"w1 "' in line:
                break
    # The gateway must drop the upstream connection long before the 10 s the stream would take.
    assert fake_openai.stream_closed.wait(5), "the upstream stream was not cancelled"
    records = shared_gateway.wait_for_records(1)
    cancelled = [r for r in records if r.get("status") == 499]
    deadline = time.monotonic() + 5
    while not cancelled and time.monotonic() < deadline:
        time.sleep(0.1)
        cancelled = [r for r in shared_gateway.access_lines() if r.get("status") == 499]
    assert cancelled and cancelled[-1]["partial"] is True
    assert cancelled[-1]["completion_tokens"] > 0 and cancelled[-1]["usage_estimated"] is True


def test_every_request_ends_in_one_record(shared_gateway: GatewayProcess, client: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    before = len(shared_gateway.access_lines())
    client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "x"}], stream=True).close()
    list(client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "x"}], stream=True))
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    records = shared_gateway.wait_for_records(before + 3)[before:]
    assert (
        len(records) == 3 and len({r["request_id"] for r in records}) == 3
    )  # tests/test_one_record_per_request.py counts every ending
    streamed = [r for r in records if r["status"] == 200]
    assert streamed and streamed[-1]["streamed"] is True
    # Usage comes from the upstream's usage chunk even though the client did not ask for it.
    assert streamed[-1]["prompt_tokens"] == 9 and streamed[-1]["completion_tokens"] == 7
    assert streamed[-1]["deployment"] == "openai/upstream-model#0" and streamed[-1]["ttft_ms"] >= 0
    assert any(r["status"] == 404 and r["error_type"] == "caller_model_not_found" for r in records)
    assert MASTER_KEY not in shared_gateway.logs() and UPSTREAM_KEY not in shared_gateway.logs()


def test_health(shared_gateway: GatewayProcess) -> None:
    assert httpx.get(shared_gateway.base_url + "/health/live").json() == {"status": "ok"}
    ready = httpx.get(shared_gateway.base_url + "/health/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert ready.headers["x-request-id"]


def test_openapi_spec_documents_the_endpoints(shared_gateway: GatewayProcess) -> None:
    spec = httpx.get(shared_gateway.base_url + "/openapi.json").json()
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models"):
        assert path in spec["paths"]
    ref = spec["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert "messages" in spec["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"]


def test_embedding_base64_round_trip_is_exact(shared_gateway: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    resp = _post(
        shared_gateway, {"model": "gpt-test", "input": "x", "encoding_format": "base64", "dimensions": 3}, path="/v1/embeddings"
    )
    raw = base64.b64decode(resp.json()["data"][0]["embedding"])
    assert [round(v, 4) for v in struct.unpack("<3f", raw)] == [0.1, 0.2, 0.3]


def test_client_gone_before_the_first_byte_still_releases_the_upstream(
    shared_gateway: GatewayProcess, fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply.content = " ".join(f"w{i}" for i in range(200))
    fake_openai.reply.chunk_delay_s = 0.05
    fake_openai.faults.append({"hang_s": 1.0})  # the upstream is slow to start
    before = len([r for r in shared_gateway.access_lines() if r.get("status") == 499])
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "x"}], "stream": True}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            shared_gateway.url + "/chat/completions", json=body, headers={"authorization": f"Bearer {MASTER_KEY}"}, timeout=0.3
        )
    # The stream would take 10 s; the gateway must drop it as soon as it finds the client gone.
    assert fake_openai.stream_closed.wait(5), "the upstream stream was not released"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if len([r for r in shared_gateway.access_lines() if r.get("status") == 499]) > before:
            break
        time.sleep(0.1)
    else:
        pytest.fail("no record for the abandoned stream")


def test_random_bad_bodies_never_get_a_5xx(shared_gateway: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    import random

    rng = random.Random(7)
    values = [True, "x", -1, 0, 1e308, [], {}, None, "\x00", [1], [{}], {"a": []}]
    bodies = [b"\xff\xfe", b"[" * 5000, b'{"model": "mock-gpt", "messages": [{"role": "user", "content": "\\ud800"}]}']
    for _ in range(120):
        body = {
            "model": rng.choice(["mock-gpt", "mock-embedding", 1, None, "x" * 300]),
            "messages": rng.choice([[], [{"role": "user", "content": "hi"}], "s", [1], [{"role": "user"}], [{}]]),
            rng.choice(
                ["stream", "n", "temperature", "max_tokens", "stop", "tools", "tool_choice", "input", "prompt", "dimensions"]
            ): rng.choice(values),
        }
        bodies.append(json.dumps(body).encode())
    headers = {"authorization": f"Bearer {MASTER_KEY}", "content-type": "application/json"}
    with httpx.Client(base_url=shared_gateway.base_url, headers=headers, timeout=10) as http:
        for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
            for raw in bodies:
                resp = http.post(path, content=raw)
                assert resp.status_code < 500, (path, raw[:120], resp.text[:200])
                if resp.status_code >= 400:
                    assert set(resp.json()["error"]) == {"message", "type", "param", "code"}
    assert "Traceback" not in shared_gateway.logs()


def test_upstream_messages_never_echo_the_provider_key(
    client: openai.OpenAI, fake_openai: FakeOpenAI, shared_gateway: GatewayProcess
) -> None:
    fake_openai.faults.append(
        {
            "status": 401,
            "message": f"Incorrect API key provided: {UPSTREAM_KEY[:8]}****{UPSTREAM_KEY[-4:]}.",
            "code": "invalid_api_key",
        }
    )
    with pytest.raises(openai.AuthenticationError) as err:
        client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "x"}])
    message = err.value.body["message"]
    assert message.startswith("Incorrect API key provided") and UPSTREAM_KEY[:8] not in message
    assert UPSTREAM_KEY[:8] not in shared_gateway.logs()
