"""The pipeline in process: a fake authenticator and admission, the real Router over fake providers
(tests/pipeline_fakes.py says why), and a sink that keeps every record. No HTTP anywhere."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
import pytest

from lockgate.auth import Principal
from lockgate.context import RequestContext
from lockgate.errors import AuthenticationFailed, ProviderServerError, RateLimited
from lockgate.pipeline import JsonOutcome, Pipeline, StreamOutcome
from lockgate.providers.base import ProviderResult, Usage
from lockgate.records import RequestRecord
from tests.pipeline_fakes import FakeProvider, RecordingSinks, chunk, make_router, usage_chunk

MODEL = "gpt-public"
ALICE = Principal(key_id="key-alice", user="alice", team="blue")


class FakeAuthenticator:
    """Answers Authenticator.authenticate: a principal for the one good token, else the real error."""

    def __init__(self, principal: Principal = ALICE) -> None:
        self.principal = principal
        self.seen: list[tuple[str | None, str | None]] = []

    async def authenticate(self, headers: Mapping[str, str], client: str | None) -> Principal:
        self.seen.append((headers.get("authorization"), client))
        if headers.get("authorization") != "Bearer good":
            raise AuthenticationFailed("Incorrect API key provided.")
        return self.principal


class FakeAdmission:
    """An Admission: refuses (429 with retry-after) when told; notes every settle."""

    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.admitted: list[str] = []
        self.settled: list[tuple[str, int]] = []

    async def admit(self, ctx: RequestContext) -> None:
        self.admitted.append(ctx.request_id)
        if self.refuse:
            raise RateLimited("Rate limit reached for requests per minute.", retry_after_s=7.2)

    def settle(self, ctx: RequestContext, record: RequestRecord) -> None:
        self.settled.append((record.request_id, record.status))


def answer(text: str = "Hi there") -> ProviderResult:
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "upstream-model-2025",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14},
    }
    return ProviderResult(body=body, usage=Usage(prompt_tokens=11, completion_tokens=3))


def request(stream: bool = False, include_usage: bool | None = None, model: str = MODEL) -> bytes:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "Say hi"}]}
    if stream:
        body["stream"] = True
    if include_usage is not None:
        body["stream_options"] = {"include_usage": include_usage}
    return orjson.dumps(body)


def build(
    providers: dict[str, FakeProvider],
    *,
    principal: Principal = ALICE,
    admission: FakeAdmission | None = None,
) -> tuple[Pipeline, RecordingSinks]:
    sinks = RecordingSinks()
    pipeline = Pipeline(
        FakeAuthenticator(principal),  # type: ignore[arg-type]
        make_router(providers),
        sinks,  # type: ignore[arg-type]
        admissions=[admission] if admission else None,
    )
    return pipeline, sinks


GOOD = {"authorization": "Bearer good"}


async def handle(pipeline: Pipeline, raw: bytes, headers: Mapping[str, str] = GOOD, rid: str = "req-1") -> Any:
    return await pipeline.handle(RequestContext(request_id=rid, endpoint="chat", client="10.0.0.9"), raw, headers)


async def drain(outcome: StreamOutcome) -> bytes:
    return b"".join([part async for part in outcome.chunks])


def events(raw: bytes) -> list[bytes]:
    """The data of each SSE event, checking the framing: every event is one `data:` line and a blank line."""
    assert raw.endswith(b"\n\n")
    out = []
    for block in raw[:-2].split(b"\n\n"):
        assert block.startswith(b"data: ") and b"\n" not in block, block
        out.append(block[6:])
    return out


# --- refusals before any upstream ------------------------------------------------------------


async def test_authentication_failure_is_a_401_with_one_record() -> None:
    provider = FakeProvider(answers=[answer()])
    pipeline, sinks = build({"dep-a": provider})
    out = await handle(pipeline, request(), headers={"authorization": "Bearer wrong"})
    assert isinstance(out, JsonOutcome) and out.status == 401
    assert orjson.loads(out.body)["error"]["code"] == "invalid_api_key"
    [record] = sinks.records
    assert (record.request_id, record.status, record.error_type, record.key_id) == (
        "req-1",
        401,
        "caller_authentication",
        None,
    )
    assert provider.bodies == []


async def test_unknown_model_is_a_404() -> None:
    provider = FakeProvider(answers=[answer()])
    pipeline, sinks = build({"dep-a": provider})
    out = await handle(pipeline, request(model="no-such-model"))
    assert isinstance(out, JsonOutcome) and out.status == 404
    [record] = sinks.records
    assert (record.status, record.public_model, record.key_id) == (404, "no-such-model", "key-alice")
    assert provider.bodies == []


async def test_model_not_allowed_for_the_key_is_a_403() -> None:
    provider = FakeProvider(answers=[answer()])
    pipeline, sinks = build({"dep-a": provider}, principal=Principal(key_id="key-bob", models=frozenset({"other"})))
    out = await handle(pipeline, request())
    assert isinstance(out, JsonOutcome) and out.status == 403
    error = orjson.loads(out.body)["error"]
    assert (error["code"], error["param"]) == ("model_not_allowed", "model")
    [record] = sinks.records
    assert (record.status, record.error_type) == (403, "policy_permission_denied")
    assert provider.bodies == []


async def test_admission_refusal_is_a_429_with_retry_after_and_is_settled() -> None:
    provider = FakeProvider(answers=[answer()])
    admission = FakeAdmission(refuse=True)
    pipeline, sinks = build({"dep-a": provider}, admission=admission)
    out = await handle(pipeline, request())
    assert isinstance(out, JsonOutcome) and out.status == 429
    assert out.headers["retry-after"] == "7"
    assert orjson.loads(out.body)["error"]["code"] == "rate_limit_exceeded"
    [record] = sinks.records
    assert (record.status, record.error_type) == (429, "policy_rate_limited")
    assert admission.settled == [("req-1", 429)]  # the refusal is settled too (counters corrected)
    assert provider.bodies == []


# --- a complete answer ------------------------------------------------------------------------


async def test_success_rewrites_the_model_and_records_once_with_usage() -> None:
    provider = FakeProvider(answers=[answer("Hello!")])
    admission = FakeAdmission()
    pipeline, sinks = build({"dep-a": provider}, admission=admission)
    out = await handle(pipeline, request())
    assert isinstance(out, JsonOutcome) and out.status == 200
    body = orjson.loads(out.body)
    assert body["model"] == MODEL  # the public name, not the upstream's
    assert body["choices"][0]["message"]["content"] == "Hello!"
    assert provider.bodies[0]["model"] == "dep-a"  # the upstream got its own model id
    assert out.headers["x-lockgate-deployment"] == "dep-a" and out.headers["x-lockgate-attempts"] == "1"
    [record] = sinks.records
    assert (record.request_id, record.status, record.deployment, record.upstream_model) == ("req-1", 200, "dep-a", "dep-a")
    assert (record.prompt_tokens, record.completion_tokens, record.usage_estimated) == (11, 3, False)
    assert (record.key_id, record.user, record.team, record.attempts) == ("key-alice", "alice", "blue", 1)
    assert admission.admitted == ["req-1"] and admission.settled == [("req-1", 200)]


async def test_failed_attempt_gets_its_own_linked_record() -> None:
    broken = FakeProvider(answers=[ProviderServerError("upstream said 500")])
    healthy = FakeProvider(answers=[answer()])
    pipeline, sinks = build({"dep-a": broken, "dep-b": healthy})
    out = await handle(pipeline, request())
    assert isinstance(out, JsonOutcome) and out.status == 200
    assert out.headers["x-lockgate-deployment"] == "dep-b" and out.headers["x-lockgate-attempts"] == "2"
    failed, final = sinks.records
    assert (failed.request_id, failed.parent_request_id, failed.attempt) == ("req-1.1", "req-1", 1)
    assert (failed.status, failed.deployment, failed.error_type) == (502, "dep-a", "provider_server_error")
    assert (final.request_id, final.parent_request_id, final.status) == ("req-1", None, 200)
    assert (final.deployment, final.attempts, final.prompt_tokens) == ("dep-b", 2, 11)


# --- streams -------------------------------------------------------------------------------------


def stream_script() -> list[Any]:
    return [chunk(role="assistant", content=""), chunk("Hel"), chunk("lo"), chunk(finish="stop"), usage_chunk(9, 2)]


async def test_stream_with_include_usage_relays_the_usage_chunk_and_done() -> None:
    provider = FakeProvider(streams=[stream_script()])
    pipeline, sinks = build({"dep-a": provider})
    out = await handle(pipeline, request(stream=True, include_usage=True))
    assert isinstance(out, StreamOutcome) and out.status == 200
    assert sinks.records == []  # nothing recorded before the stream is over
    data = events(await drain(out))
    assert data[-1] == b"[DONE]"
    chunks = [orjson.loads(d) for d in data[:-1]]
    assert [c["model"] for c in chunks] == [MODEL] * 5
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == "Hello"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 2
    assert all("usage" in c for c in chunks)  # include_usage: `usage: null` kept, as OpenAI sends it
    [record] = sinks.records
    assert (record.status, record.streamed, record.partial) == (200, True, False)
    assert (record.prompt_tokens, record.completion_tokens, record.usage_estimated) == (9, 2, False)
    assert record.ttft_ms is not None
    assert provider.opened[0].closed >= 1


async def test_stream_without_include_usage_drops_the_usage_chunk_but_records_it() -> None:
    provider = FakeProvider(streams=[stream_script()])
    pipeline, sinks = build({"dep-a": provider})
    out = await handle(pipeline, request(stream=True))
    assert isinstance(out, StreamOutcome)
    data = events(await drain(out))
    assert data[-1] == b"[DONE]"
    chunks = [orjson.loads(d) for d in data[:-1]]
    assert len(chunks) == 4 and all(c["choices"] for c in chunks)
    assert all("usage" not in c for c in chunks)
    [record] = sinks.records
    assert (record.status, record.prompt_tokens, record.completion_tokens) == (200, 9, 2)


async def test_stream_error_midway_ends_in_an_error_event_and_a_partial_record() -> None:
    script = [chunk(role="assistant", content=""), chunk("Hello, wor"), ProviderServerError("connection reset by upstream")]
    provider = FakeProvider(streams=[script])
    pipeline, sinks = build({"dep-a": provider})
    out = await handle(pipeline, request(stream=True))
    assert isinstance(out, StreamOutcome)
    data = events(await drain(out))
    assert b"[DONE]" not in data
    assert orjson.loads(data[1])["choices"][0]["delta"]["content"] == "Hello, wor"
    error = orjson.loads(data[-1])["error"]
    assert (error["code"], error["message"]) == ("upstream_error", "connection reset by upstream")
    [record] = sinks.records
    assert (record.status, record.partial, record.error_type) == (502, True, "provider_server_error")
    # The upstream never reported usage: what was relayed is counted, and marked as estimated.
    assert record.usage_estimated and record.completion_tokens == (len("Hello, wor") + 3) // 4
    assert provider.opened[0].closed >= 1


async def test_stream_abandoned_before_the_relay_is_one_499_record() -> None:
    provider = FakeProvider(streams=[stream_script()])
    pipeline, sinks = build({"dep-a": provider})
    out = await handle(pipeline, request(stream=True))
    assert isinstance(out, StreamOutcome) and out.abandon is not None
    await out.abandon()
    await out.abandon()  # the web layer may call it again: still one record
    [record] = sinks.records
    assert (record.status, record.error_type, record.partial) == (499, "client_closed", True)
    assert provider.opened[0].closed >= 1  # the upstream was let go


async def test_stream_failover_before_first_byte_records_the_failed_attempt() -> None:
    broken = FakeProvider(streams=[ProviderServerError("upstream said 502")])
    healthy = FakeProvider(streams=[stream_script()])
    pipeline, sinks = build({"dep-a": broken, "dep-b": healthy})
    out = await handle(pipeline, request(stream=True))
    assert isinstance(out, StreamOutcome)
    assert out.headers["x-lockgate-deployment"] == "dep-b"
    [failed] = sinks.records  # the failed attempt is recorded at once; the request when its stream ends
    assert (failed.request_id, failed.parent_request_id, failed.deployment) == ("req-1.1", "req-1", "dep-a")
    await drain(out)
    assert [r.request_id for r in sinks.records] == ["req-1.1", "req-1"]
    assert (sinks.records[1].status, sinks.records[1].attempts) == (200, 2)


@pytest.mark.parametrize("stream", [False, True])
async def test_one_record_per_request(stream: bool) -> None:
    provider = FakeProvider(answers=[answer()] * 3, streams=[stream_script() for _ in range(3)])
    pipeline, sinks = build({"dep-a": provider})
    for n in range(3):
        out = await handle(pipeline, request(stream=stream), rid=f"req-{n}")
        if isinstance(out, StreamOutcome):
            await drain(out)
            assert out.abandon is not None
            await out.abandon()  # the web layer calls it after every stream
    assert [r.request_id for r in sinks.records] == ["req-0", "req-1", "req-2"]
