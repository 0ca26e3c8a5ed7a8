"""Failover through a real `lockgate serve` in front of several fault-injecting fake OpenAI upstreams."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest

from tests.conftest import openai_deployment
from tests.fakes.openai_upstream import MID_STREAM_ERROR, FakeOpenAI
from tests.harness import MASTER_KEY, GatewayProcess, free_port

MSG = [{"role": "user", "content": "hi"}]
ROUTER = {
    "max_attempts": 4,
    "backoff": {"base_s": 0.01, "max_s": 0.05},
    "deadline_s": 30,
    "cooldown": {"failures": 3, "window_s": 60, "cooldown_s": 30},
}


@pytest.fixture(scope="module")
def fakes_pool() -> Iterator[list[FakeOpenAI]]:
    fakes = [FakeOpenAI().start() for _ in range(3)]
    yield fakes
    for fake in fakes:
        fake.stop()


@pytest.fixture
def fakes(fakes_pool: list[FakeOpenAI]) -> Iterator[list[FakeOpenAI]]:
    for fake in fakes_pool:
        fake.reset()
    yield fakes_pool
    for fake in fakes_pool:
        fake.reset()


def deps(*pairs: tuple[str, FakeOpenAI | str], **extra: Any) -> list[dict[str, Any]]:
    out = []
    for name, target in pairs:
        if isinstance(target, FakeOpenAI):
            d = openai_deployment(target, id=name, **{"first_byte_timeout_s": 3, **extra})
        else:  # an api_base nobody listens on
            d = {"provider": "openai", "model": "upstream-model", "id": name, "api_base": target, "api_key": "sk-x", **extra}
        out.append(d)
    return out


def gateway(start: Callable[..., GatewayProcess], models: list[dict[str, Any]], **router: Any) -> GatewayProcess:
    return start({"auth": {"master_key": MASTER_KEY}, "models": models, "router": {**ROUTER, **router}})


def client(gw: GatewayProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url, api_key=MASTER_KEY, max_retries=0, timeout=20)


def sse_events(gw: GatewayProcess, model: str) -> tuple[httpx.Response, list[Any]]:
    """A raw streamed chat request: the response and its decoded `data:` events."""
    with httpx.Client(timeout=20) as http:
        resp = http.post(
            f"{gw.url}/chat/completions",
            headers={"Authorization": f"Bearer {MASTER_KEY}"},
            json={"model": model, "messages": MSG, "stream": True},
        )
    events: list[Any] = []
    for line in resp.text.splitlines():
        if line.startswith("data: "):
            data = line[6:]
            events.append(data if data == "[DONE]" else orjson.loads(data))
    return resp, events


def text_of(events: list[Any]) -> str:
    return "".join((c["choices"][0]["delta"].get("content") or "") for c in events if isinstance(c, dict) and c.get("choices"))


def ready(gw: GatewayProcess) -> dict[str, dict[str, Any]]:
    body = httpx.get(f"{gw.base_url}/health/ready").json()
    return {d["id"]: d for m in body["models"] for d in m["deployments"]}


# --- failover before the first byte ----------------------------------------------------------


def test_first_deployment_500_answer_still_arrives_non_streaming(
    fakes: list[FakeOpenAI], start_gateway: Callable[..., GatewayProcess]
) -> None:
    a, b, _ = fakes
    gw = gateway(start_gateway, [{"name": "smart", "deployments": deps(("a", a), ("b", b))}])
    a.faults.append({"status": 500})
    raw = client(gw).chat.completions.with_raw_response.create(model="smart", messages=MSG)  # type: ignore[arg-type]
    answer = raw.parse()
    assert answer.choices[0].message.content == "Hello from the fake upstream."
    assert answer.model == "smart"
    assert raw.headers["x-lockgate-deployment"] == "b" and raw.headers["x-lockgate-attempts"] == "2"
    assert len(a.requests) == 1 and len(b.requests) == 1
    # One record per attempt, linked to the request.
    lines = gw.wait_for_records(2)
    main = next(line for line in lines if line.get("attempts") == 2)
    attempt = next(line for line in lines if line.get("parent_request_id"))
    assert attempt["parent_request_id"] == main["request_id"] and attempt["request_id"] == main["request_id"] + ".1"
    assert attempt["deployment"] == "a" and attempt["status"] == 502 and attempt["error_type"] == "provider_server_error"
    assert main["deployment"] == "b" and main["status"] == 200


def test_first_deployment_fails_answer_still_arrives_streaming(
    fakes: list[FakeOpenAI], start_gateway: Callable[..., GatewayProcess]
) -> None:
    a, b, _ = fakes
    gw = gateway(start_gateway, [{"name": "smart", "deployments": deps(("a", a), ("b", b))}])
    a.faults.append({"status": 529, "type": "overloaded_error"})
    with client(gw).chat.completions.with_streaming_response.create(model="smart", messages=MSG, stream=True) as raw:  # type: ignore[arg-type]
        assert raw.headers["x-lockgate-deployment"] == "b" and raw.headers["x-lockgate-attempts"] == "2"
        text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    assert text == "Hello from the fake upstream."
    assert len(a.requests) == 1 and len(b.requests) == 1


def test_connection_refused_fails_over(fakes: list[FakeOpenAI], start_gateway: Callable[..., GatewayProcess]) -> None:
    _, b, _ = fakes
    dead = f"http://127.0.0.1:{free_port()}/v1"
    gw = gateway(start_gateway, [{"name": "smart", "deployments": deps(("dead", dead), ("b", b))}])
    raw = client(gw).chat.completions.with_raw_response.create(model="smart", messages=MSG)  # type: ignore[arg-type]
    assert raw.parse().choices[0].message.content == "Hello from the fake upstream."
    assert raw.headers["x-lockgate-deployment"] == "b"
    lines = gw.wait_for_records(2)
    assert any(line.get("error_type") == "provider_unavailable" and line.get("deployment") == "dead" for line in lines)


def test_hang_past_first_byte_timeout_streams_from_the_next(
    fakes: list[FakeOpenAI], start_gateway: Callable[..., GatewayProcess]
) -> None:
    a, b, _ = fakes
    models = [{"name": "smart", "deployments": [*deps(("a", a), first_byte_timeout_s=0.3)[:1], *deps(("b", b))]}]
    gw = gateway(start_gateway, models)
    a.faults.append({"hang_s": 1.5})
    started = time.monotonic()
    resp, events = sse_events(gw, "smart")
    assert time.monotonic() - started < 1.3  # gave up on `a` at its first-byte timeout
    assert resp.status_code == 200 and resp.headers["x-lockgate-deployment"] == "b"
    assert text_of(events) == "Hello from the fake upstream." and events[-1] == "[DONE]"
    assert len(b.requests) == 1


def test_429_with_retry_after_cools_down_then_recovers(
    fakes: list[FakeOpenAI], start_gateway: Callable[..., GatewayProcess]
) -> None:
    a, b, _ = fakes
    gw = gateway(start_gateway, [{"name": "smart", "deployments": deps(("a", a), ("b", b))}])
    a.faults.append({"status": 429, "headers": {"retry-after": "1"}, "type": "requests", "code": "rate_limit_exceeded"})
    c = client(gw)
    r1 = c.chat.completions.with_raw_response.create(model="smart", messages=MSG)  # type: ignore[arg-type]
    assert r1.headers["x-lockgate-deployment"] == "b"
    state = ready(gw)
    assert state["a"]["state"] == "cooling" and 0 < state["a"]["cooldown_remaining_s"] <= 1
    assert state["b"]["state"] == "healthy"
    r2 = c.chat.completions.with_raw_response.create(model="smart", messages=MSG)  # type: ignore[arg-type]
    assert r2.headers["x-lockgate-deployment"] == "b" and r2.headers["x-lockgate-attempts"] == "1"
    assert len(a.requests) == 1  # skipped while cooling
    time.sleep(1.05)
    assert ready(gw)["a"]["state"] == "half_open"
    r3 = c.chat.completions.with_raw_response.create(model="smart", messages=MSG)  # type: ignore[arg-type]
    assert r3.headers["x-lockgate-deployment"] == "a"  # the probe succeeded
    assert ready(gw)["a"]["state"] == "healthy" and len(a.requests) == 2


def test_repeated_failures_cool_a_deployment_down(fakes: list[FakeOpenAI], start_gateway: Callable[..., GatewayProcess]) -> None:
    a, b, _ = fakes
    gw = gateway(
        start_gateway,
        [{"name": "smart", "deployments": deps(("a", a), ("b", b))}],
        cooldown={"failures": 2, "window_s": 60, "cooldown_s": 30},
    )
    a.faults.extend([{"status": 500}, {"status": 503}, {"status": 500}])
    c = client(gw)
    for _ in range(4):
        c.chat.completions.create(model="smart", messages=MSG)  # type: ignore[arg-type]
    assert len(a.requests) == 2 and len(b.requests) == 4
    assert ready(gw)["a"]["state"] == "cooling"


def test_deployment_failing_every_other_request(fakes: list[FakeOpenAI], start_gateway: Callable[..., GatewayProcess]) -> None:
    a, b, _ = fakes
    gw = gateway(
        start_gateway,
        [{"name": "smart", "deployments": deps(("a", a), ("b", b))}],
        cooldown={"failures": 5, "window_s": 60, "cooldown_s": 30},
    )
    for _ in range(4):
        a.faults.extend([{"status": 502}, {}])
    c = client(gw)
    served = []
    for _ in range(8):
        raw = c.chat.completions.with_raw_response.create(model="smart", messages=MSG)  # type: ignore[arg-type]
        assert raw.parse().choices[0].message.content == "Hello from the fake upstream."
        served.append((raw.headers["x-lockgate-deployment"], raw.headers["x-lockgate-attempts"]))
    assert served == [("b", "2"), ("a", "1")] * 4  # every request answered; a's success resets its window


def test_fallbacks_after_the_group_is_exhausted(fakes: list[FakeOpenAI], start_gateway: Callable[..., GatewayProcess]) -> None:
    a, b, c = fakes
    models = [
        {"name": "smart", "fallbacks": ["backup"], "deployments": deps(("a", a), ("b", b))},
        {"name": "backup", "deployments": deps(("c", c))},
    ]
    gw = gateway(start_gateway, models, max_attempts=2)
    a.faults.append({"status": 500})
    b.faults.append({"status": 503})
    c.reply.content = "From the backup."
    raw = client(gw).chat.completions.with_raw_response.create(model="smart", messages=MSG)  # type: ignore[arg-type]
    assert raw.parse().choices[0].message.content == "From the backup."
    assert raw.parse().model == "smart"
    assert raw.headers["x-lockgate-deployment"] == "c" and raw.headers["x-lockgate-attempts"] == "3"
    assert [len(f.requests) for f in (a, b, c)] == [1, 1, 1]


def test_non_retryable_error_is_returned_at_once(fakes: list[FakeOpenAI], start_gateway: Callable[..., GatewayProcess]) -> None:
    a, b, _ = fakes
    gw = gateway(start_gateway, [{"name": "smart", "deployments": deps(("a", a), ("b", b))}])
    a.faults.append({"status": 400, "message": "Invalid 'messages': bad", "param": "messages"})
    with pytest.raises(openai.BadRequestError) as info:
        client(gw).chat.completions.create(model="smart", messages=MSG)  # type: ignore[arg-type]
    assert info.value.response.headers["x-lockgate-attempts"] == "1"
    assert "Invalid 'messages'" in info.value.message
    assert len(b.requests) == 0


def test_all_failing_returns_the_last_error_openai_shaped(
    fakes: list[FakeOpenAI], start_gateway: Callable[..., GatewayProcess]
) -> None:
    a, b, _ = fakes
    gw = gateway(start_gateway, [{"name": "smart", "deployments": deps(("a", a), ("b", b))}], max_attempts=3)
    a.faults.extend([{"status": 500}] * 2)
    b.faults.append({"status": 503, "message": "b overloaded"})
    with httpx.Client(timeout=20) as http:
        resp = http.post(
            f"{gw.url}/chat/completions",
            headers={"Authorization": f"Bearer {MASTER_KEY}"},
            json={"model": "smart", "messages": MSG},
        )
    assert resp.status_code == 502
    assert resp.json()["error"]["code"] == "upstream_error" and set(resp.json()["error"]) == {"message", "type", "param", "code"}
    assert resp.headers["x-lockgate-attempts"] == "3"
    assert [len(a.requests), len(b.requests)] == [2, 1]


def test_deadline_stops_failover(fakes: list[FakeOpenAI], start_gateway: Callable[..., GatewayProcess]) -> None:
    a, b, _ = fakes
    models = [{"name": "smart", "deployments": [*deps(("a", a), timeout_s=0.6), *deps(("b", b))]}]
    gw = gateway(start_gateway, models, deadline_s=0.5)
    a.faults.append({"hang_s": 1.2})
    with httpx.Client(timeout=20) as http:
        resp = http.post(
            f"{gw.url}/chat/completions",
            headers={"Authorization": f"Bearer {MASTER_KEY}"},
            json={"model": "smart", "messages": MSG},
        )
    assert resp.status_code == 504 and resp.json()["error"]["code"] == "upstream_timeout"
    assert len(b.requests) == 0  # no attempt starts after the deadline


def test_cost_strategy_sends_to_the_cheapest(fakes: list[FakeOpenAI], start_gateway: Callable[..., GatewayProcess]) -> None:
    a, b, _ = fakes
    deployments = [
        *deps(("pricey", a), input_cost_per_mtok=3, output_cost_per_mtok=15),
        *deps(("cheap", b), input_cost_per_mtok=0.1, output_cost_per_mtok=0.4),
    ]
    gw = gateway(start_gateway, [{"name": "smart", "strategy": "cost", "deployments": deployments}])
    c = client(gw)
    for _ in range(3):
        assert (
            c.chat.completions.with_raw_response.create(model="smart", messages=MSG).headers["x-lockgate-deployment"] == "cheap"
        )  # type: ignore[arg-type]
    b.faults.append({"status": 500})
    assert c.chat.completions.with_raw_response.create(model="smart", messages=MSG).headers["x-lockgate-deployment"] == "pricey"  # type: ignore[arg-type]


# --- after the first byte --------------------------------------------------------------------


def test_stream_dropped_mid_way_ends_with_an_error_and_a_partial_record(
    fakes: list[FakeOpenAI], start_gateway: Callable[..., GatewayProcess]
) -> None:
    a, b, _ = fakes
    gw = gateway(start_gateway, [{"name": "smart", "deployments": deps(("a", a), ("b", b))}])
    a.reply.content = "one two three four five six"
    a.faults.append({"drop_after": 3})
    resp, events = sse_events(gw, "smart")
    assert resp.status_code == 200
    assert text_of(events) == "one two three "
    assert "error" in events[-1] and "[DONE]" not in events
    assert set(events[-1]["error"]) == {"message", "type", "param", "code"}
    assert len(b.requests) == 0  # bytes reached the client: no silent switch
    record = gw.wait_for_records(1)[-1]
    assert record["partial"] is True and record["deployment"] == "a" and record["completion_tokens"] > 0
    assert ready(gw)["a"]["errors"] == 1  # the break counts against a's health


def test_stream_resume_continues_on_the_next_deployment(
    fakes: list[FakeOpenAI], start_gateway: Callable[..., GatewayProcess]
) -> None:
    a, b, _ = fakes
    gw = gateway(start_gateway, [{"name": "smart", "stream_resume": True, "deployments": deps(("a", a), ("b", b))}])
    a.reply.content = "one two three four five six"
    a.faults.append({"drop_after": 3})
    b.reply.content = " four five six"  # a model continuing "three" starts with a space
    c = client(gw)
    stream = c.chat.completions.create(model="smart", messages=MSG, stream=True)  # type: ignore[arg-type]
    chunks = list(stream)
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == "one two three four five six"
    assert len({ch.id for ch in chunks}) == 1  # one stream to the client
    assert sum(1 for ch in chunks if ch.choices and ch.choices[0].delta.role) == 1
    # b was asked to continue after the delivered text.
    sent = b.requests[0].body["messages"]
    assert sent[-1] == {"role": "assistant", "content": "one two three"} and sent[:-1] == MSG  # no trailing space
    lines = gw.wait_for_records(2)
    main = next(line for line in lines if not line.get("parent_request_id"))
    broken = next(line for line in lines if line.get("parent_request_id"))
    assert main["status"] == 200 and main["deployment"] == "b" and main["attempts"] == 2 and not main.get("partial")
    assert broken["deployment"] == "a" and broken["parent_request_id"] == main["request_id"]


# A stream that ends cleanly with no finish reason or [DONE], and one that sends an error event.
CLEAN_END = ({"end_after": 3}, "provider_truncated", "ended its stream before finishing")
ERROR_EVENT = ({"error_after": 3}, "provider_server_error", MID_STREAM_ERROR["message"])


@pytest.mark.parametrize("fault, kind, message", [CLEAN_END, ERROR_EVENT], ids=["clean-end", "error-event"])
def test_unfinished_stream_is_a_break_the_client_is_told_of(
    fakes: list[FakeOpenAI], start_gateway: Callable[..., GatewayProcess], fault: dict[str, Any], kind: str, message: str
) -> None:
    a, b, _ = fakes
    gw = gateway(start_gateway, [{"name": "smart", "deployments": deps(("a", a), ("b", b))}])
    a.reply.content = "one two three four five six"
    a.faults.append(fault)
    resp, events = sse_events(gw, "smart")
    assert resp.status_code == 200 and text_of(events) == "one two three "
    # One error event, the gateway's own, last; the upstream's error object is not relayed as a chunk.
    errors = [e for e in events if isinstance(e, dict) and "error" in e]
    assert errors == [events[-1]] and "[DONE]" not in events
    assert message in errors[0]["error"]["message"] and errors[0]["error"]["type"] == "server_error"
    assert all(e.get("object") == "chat.completion.chunk" for e in events[:-1])
    assert not any(e["choices"][0].get("finish_reason") for e in events[:-1] if e["choices"])
    assert len(b.requests) == 0  # bytes reached the client: no silent switch
    record = gw.wait_for_records(1)[-1]
    assert record["status"] == 502 and record["error_type"] == kind and record["partial"] is True
    assert record["deployment"] == "a" and record["completion_tokens"] > 0
    assert ready(gw)["a"]["errors"] == 1  # the break counts against a's health


@pytest.mark.parametrize("fault, kind, message", [CLEAN_END, ERROR_EVENT], ids=["clean-end", "error-event"])
def test_unfinished_stream_resumes_on_the_next_deployment(
    fakes: list[FakeOpenAI], start_gateway: Callable[..., GatewayProcess], fault: dict[str, Any], kind: str, message: str
) -> None:
    a, b, _ = fakes
    gw = gateway(start_gateway, [{"name": "smart", "stream_resume": True, "deployments": deps(("a", a), ("b", b))}])
    a.reply.content = "one two three four five six"
    a.faults.append(fault)
    b.reply.content = " four five six"
    chunks = list(client(gw).chat.completions.create(model="smart", messages=MSG, stream=True))  # type: ignore[arg-type]
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == "one two three four five six"
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason] == ["stop"]
    assert b.requests[0].body["messages"][-1] == {"role": "assistant", "content": "one two three"}
    lines = gw.wait_for_records(2)
    main = next(line for line in lines if not line.get("parent_request_id"))
    broken = next(line for line in lines if line.get("parent_request_id"))
    assert main["status"] == 200 and main["deployment"] == "b" and main["attempts"] == 2 and not main["partial"]
    assert broken["deployment"] == "a" and broken["error_type"] == kind and message in broken["error_message"]
