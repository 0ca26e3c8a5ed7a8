"""An upstream that misbehaves on the wire, through a real `lockgate serve`, on both upstream protocols.

Each fault (tests/fakes/faulty_upstream.py) must end in a defined answer within its
configured deadline: failover to the next deployment when there is one and nothing
was relayed yet; otherwise a 502/504 in OpenAI's shape, or, once a stream has
started, an error event in it. The request's record names the fault by its kind,
and the gateway answers the next request as if nothing happened.

Deadlines of every deployment here: timeout_s 2, first_byte_timeout_s 1,
stream_idle_timeout_s 3 (longer than the trickle's one-byte gaps),
max_stream_duration_s 3.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest

from tests.fakes.faulty_upstream import TEXT, FaultyUpstream
from tests.harness import MASTER_KEY, GatewayProcess

PROTOCOLS = ("openai", "anthropic")
MSG = [{"role": "user", "content": "hi"}]
TIMEOUT_S, FIRST_BYTE_S, MAX_STREAM_S = 2.0, 1.0, 3.0
SLACK_S = 1.5  # a loaded machine's margin over a deadline


@dataclass(frozen=True)
class Case:
    fault: str
    stream: bool
    status: int  # the client's HTTP status (200 once a stream started), and the record's
    kind: str
    before: bool  # failed before anything reached the client: a next deployment takes over
    within_s: float  # the answer's deadline

    @property
    def id(self) -> str:
        return f"{self.fault}-{'stream' if self.stream else 'json'}"


FAST = 2.0
CASES = [
    # Non-streamed answers: every fault is seen before a byte goes to the client.
    Case("not_json", False, 502, "provider_bad_response", True, FAST),
    Case("truncated_json", False, 502, "provider_bad_response", True, FAST),
    Case("html", False, 502, "provider_bad_response", True, FAST),
    Case("wrong_type", False, 502, "provider_bad_response", True, FAST),
    Case("short_body", False, 502, "provider_truncated", True, FAST),
    Case("reset", False, 502, "provider_truncated", True, FAST),
    Case("silence", False, 504, "provider_timeout", True, TIMEOUT_S),
    Case("usage_negative", False, 502, "provider_bad_usage", True, FAST),
    Case("usage_string", False, 502, "provider_bad_usage", True, FAST),
    Case("usage_huge", False, 502, "provider_bad_usage", True, FAST),
    # Streams that fail before their first event: still failed over.
    Case("not_json", True, 502, "provider_bad_response", True, FAST),
    Case("truncated_json", True, 502, "provider_bad_response", True, FAST),
    Case("html", True, 502, "provider_bad_response", True, FAST),
    Case("wrong_type", True, 502, "provider_bad_response", True, FAST),
    Case("silence", True, 504, "provider_timeout", True, FIRST_BYTE_S),
    Case("trickle", True, 504, "provider_timeout", True, FIRST_BYTE_S),
    Case("malformed_first", True, 502, "provider_bad_response", True, FAST),
    # Streams that fail after their first event: an error event, the last one.
    Case("short_body", True, 502, "provider_truncated", False, FAST),
    Case("reset", True, 502, "provider_truncated", False, FAST),
    Case("trickle_late", True, 504, "provider_timeout", False, MAX_STREAM_S),
    Case("endless", True, 504, "provider_timeout", False, MAX_STREAM_S),
    Case("malformed", True, 502, "provider_bad_response", False, FAST),
    Case("usage_negative", True, 502, "provider_bad_usage", False, FAST),
    Case("usage_string", True, 502, "provider_bad_usage", False, FAST),
    Case("usage_huge", True, 502, "provider_bad_usage", False, FAST),
]


def _deployment(up: FaultyUpstream, protocol: str, fault: str, id: str) -> dict[str, Any]:
    url = up.openai_url if protocol == "openai" else up.anthropic_url
    return {
        "id": id,
        "provider": protocol,
        "model": fault,  # names the fault to the fake
        "api_base": url,
        "api_key": "sk-faulty-upstream-key-0123456789",
        "connect_timeout_s": 1,
        "timeout_s": TIMEOUT_S,
        "first_byte_timeout_s": FIRST_BYTE_S,
        "stream_idle_timeout_s": 3,
        "max_stream_duration_s": MAX_STREAM_S,
        "input_cost_per_mtok": 1.0,
        "output_cost_per_mtok": 4.0,
    }


@pytest.fixture(scope="module")
def upstream() -> Iterator[FaultyUpstream]:
    up = FaultyUpstream().start()
    yield up
    up.stop()


@pytest.fixture(scope="module")
def gw(upstream: FaultyUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    models = []
    for protocol in PROTOCOLS:
        models.append({"name": f"{protocol}-ok", "deployments": [_deployment(upstream, protocol, "ok", "ok")]})
        for fault in sorted({c.fault for c in CASES}):
            bad = _deployment(upstream, protocol, fault, "bad")
            models.append({"name": f"{protocol}-{fault}", "deployments": [bad]})
            models.append({"name": f"{protocol}-{fault}-fo", "deployments": [bad, _deployment(upstream, protocol, "ok", "next")]})
    config = {
        "auth": {"master_key": MASTER_KEY},
        # Two attempts: the fault, then the next deployment; no backoff; no cool-down that would
        # make a later case skip its faulty deployment.
        "router": {
            "max_attempts": 2,
            "backoff": {"base_s": 0, "max_s": 0},
            "deadline_s": 30,
            "cooldown": {"failures": 1000},
        },
        "models": models,
    }
    gateway = GatewayProcess(config, tmp_path_factory.mktemp("faults")).start()
    yield gateway
    gateway.stop()


def _attempt_record(gw: GatewayProcess, request_id: str) -> dict[str, Any]:
    return gw.access_line(f"{request_id}.1")


def _call(gw: GatewayProcess, model: str, stream: bool) -> tuple[httpx.Response, list[dict[str, Any]], float]:
    """The response, its SSE events (parsed; a stream only) and how long the whole answer took."""
    started = time.monotonic()
    body = {"model": model, "messages": MSG, "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}
    headers = {"authorization": f"Bearer {MASTER_KEY}"}
    events: list[dict[str, Any]] = []
    with httpx.Client(timeout=15) as client:
        with client.stream("POST", f"{gw.url}/chat/completions", json=body, headers=headers) as resp:
            if resp.headers.get("content-type", "").startswith("text/event-stream"):
                for line in resp.iter_lines():
                    if line.startswith("data: ") and line != "data: [DONE]":
                        events.append(orjson.loads(line[6:]))
            else:
                resp.read()
    return resp, events, time.monotonic() - started


def _assert_healthy(gw: GatewayProcess) -> None:
    assert httpx.get(f"{gw.base_url}/health/live", timeout=5).status_code == 200
    for protocol in PROTOCOLS:
        for stream in (False, True):
            resp, events, _ = _call(gw, f"{protocol}-ok", stream)
            assert resp.status_code == 200, resp.text if not stream else events
            if stream:
                assert "".join(c["choices"][0]["delta"].get("content") or "" for c in events if c.get("choices")) == TEXT
            else:
                assert resp.json()["choices"][0]["message"]["content"] == TEXT


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_fault_with_no_next_deployment_ends_in_a_defined_answer(gw: GatewayProcess, protocol: str, case: Case) -> None:
    resp, events, took = _call(gw, f"{protocol}-{case.fault}", case.stream)
    # A lone deployment that failed before the first byte is tried once more (max_attempts 2),
    # each try within its deadline; a stream that started is never retried.
    attempts = 2 if case.before else 1
    assert took < attempts * case.within_s + SLACK_S, f"{case.id} took {took:.2f} s"
    rid = resp.headers["x-request-id"]
    if case.before:
        # Nothing was relayed: an error in OpenAI's shape, with its status.
        assert resp.status_code == case.status, resp.text
        error = resp.json()["error"]
        assert error["type"] == "server_error" and error["message"], error
    else:
        # The stream had started: what came is relayed, then one error event, last; no [DONE].
        assert resp.status_code == 200
        assert events and "error" in events[-1], events[-3:]
        assert all("error" not in e for e in events[:-1])
        error = events[-1]["error"]
        assert error["message"] and error["type"] == "server_error", error
    assert "Traceback" not in error["message"] and "sk-faulty" not in error["message"]
    record = gw.access_line(rid)
    assert record["status"] == case.status and record["error_type"] == case.kind, record
    assert record["attempts"] == attempts
    if not case.before:
        assert record["partial"] is True
    if case.kind == "provider_bad_usage":
        # The nonsense was not charged: the counts are the gateway's own estimate, within reason.
        assert 0 <= record["completion_tokens"] < 100 and 0 <= record["prompt_tokens"] < 100, record
        assert record["cost_usd"] is not None and 0 <= record["cost_usd"] < 1e-3
    _assert_healthy(gw)


BEFORE = [c for c in CASES if c.before]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("case", BEFORE, ids=[c.id for c in BEFORE])
def test_a_fault_before_the_first_byte_fails_over_to_the_next_deployment(gw: GatewayProcess, protocol: str, case: Case) -> None:
    resp, events, took = _call(gw, f"{protocol}-{case.fault}-fo", case.stream)
    assert took < case.within_s + SLACK_S, f"{case.id} took {took:.2f} s"
    assert resp.status_code == 200
    assert resp.headers["x-lockgate-attempts"] == "2" and resp.headers["x-lockgate-deployment"] == "next"
    if case.stream:
        assert "".join(c["choices"][0]["delta"].get("content") or "" for c in events if c.get("choices")) == TEXT
        assert all("error" not in e for e in events)
    else:
        assert resp.json()["choices"][0]["message"]["content"] == TEXT
    rid = resp.headers["x-request-id"]
    own, failed = gw.access_line(rid), _attempt_record(gw, rid)
    assert own["status"] == 200 and own["attempts"] == 2 and own["deployment"] == "next" and own.get("error_type") is None
    assert own["prompt_tokens"] == 9 and own["completion_tokens"] == 7
    assert failed["deployment"] == "bad" and failed["error_type"] == case.kind and failed["status"] == case.status
    _assert_healthy(gw)


def test_no_connection_is_left_behind(gw: GatewayProcess, upstream: FaultyUpstream) -> None:
    """After every fault, the gateway holds no upstream connection open (the held ones were closed)."""
    deadline = time.monotonic() + 5
    while upstream.open_connections and time.monotonic() < deadline:
        time.sleep(0.1)
    assert upstream.open_connections == 0
    assert len(upstream.requests) > 2 * len(CASES)  # the cases above did reach it


# --- the usage check itself (pure functions) ---------------------------------------------------


@pytest.mark.parametrize(
    "usage",
    [
        {"prompt_tokens": -1, "completion_tokens": 7},
        {"prompt_tokens": "9", "completion_tokens": 7},
        {"prompt_tokens": 9, "completion_tokens": 10**12},
        {"prompt_tokens": 9.5, "completion_tokens": 7},
        {"prompt_tokens": True, "completion_tokens": 7},
        {"prompt_tokens": 9, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 10}},
        {"prompt_tokens": 9, "completion_tokens": 7, "completion_tokens_details": {"reasoning_tokens": 8}},
        {"prompt_tokens": 9, "completion_tokens": 7, "prompt_tokens_details": "lots"},
        ["not", "an", "object"],
    ],
)
def test_usage_that_cannot_be_true_is_refused(usage: Any) -> None:
    from lockgate.errors import ProviderBadUsage
    from lockgate.providers.anthropic.response import usage_from_anthropic
    from lockgate.providers.base import Usage

    with pytest.raises(ProviderBadUsage):
        Usage.from_openai(usage)
    if (
        isinstance(usage, dict)
        and not isinstance(usage.get("prompt_tokens"), (dict, str))
        and "prompt_tokens_details" not in usage
    ):
        anthropic = {"input_tokens": usage["prompt_tokens"], "output_tokens": usage["completion_tokens"]}
        if "completion_tokens_details" not in usage:
            with pytest.raises(ProviderBadUsage):
                usage_from_anthropic(anthropic)
            assert usage_from_anthropic(anthropic, strict=False).total_tokens >= 0  # a failing stream's estimate


def test_usage_that_is_true_is_kept() -> None:
    from lockgate.providers.base import Usage

    got = Usage.from_openai(
        {"prompt_tokens": 9.0, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 4, "cached_tokens_x": None}}
    )
    assert got is not None and (got.prompt_tokens, got.completion_tokens, got.cached_tokens) == (9, 7, 4)
    assert Usage.from_openai(None) is None and Usage.from_openai({}) is None
