"""Responses pass-through, piece by piece: the body a native deployment gets, the stream relayed from a
recorded OpenAI stream (served over real HTTP on 127.0.0.1), and the framing's own response.failed."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pydantic
import pytest
from aiohttp import web

from lockgate.config import OpenAIDeployment
from lockgate.errors import ProviderBadResponse
from lockgate.ingress.responses.native import NativeFrames, native_body
from lockgate.providers.openai_responses import OpenAIResponsesProvider, error_from_event, usage_of_response
from tests.responses_support import check_stream, parse_sse

FIXTURE = Path(__file__).parent / "fixtures" / "responses" / "native_reasoning_text_call.sse"
RECORDED = FIXTURE.read_bytes()
FRAMES = [frame + b"\n\n" for frame in RECORDED.split(b"\n\n") if frame]


def test_native_body_is_the_clients_with_only_model_rewritten() -> None:
    original = {
        "model": "gpt-public",
        "input": [{"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAA-opaque"}],
        "include": ["reasoning.encrypted_content"],
        "tools": [{"type": "web_search"}],
        "some_future_field": {"x": [1]},
        "previous_response_id": "resp_up",
    }
    snapshot = json.loads(json.dumps(original))
    body = native_body(original, "gpt-upstream", [{"type": "message", "role": "user", "content": "old"}], True)
    assert body == {**snapshot, "model": "gpt-upstream"}
    assert original == snapshot  # the client's body is not touched (a failover sends it again)


def test_native_body_inlines_a_chain_the_upstream_does_not_hold() -> None:
    history = [
        {"id": "msg_ours", "type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hello"}]},
        {"id": "fc_ours", "type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"},
    ]
    body = native_body({"model": "m", "input": "Next", "previous_response_id": "resp_ours"}, "up", history, False)
    assert "previous_response_id" not in body and body["model"] == "up"
    assert body["input"] == [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hello"}]},
        {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Next"}]},
    ]


def test_usage_and_error_codes() -> None:
    usage = usage_of_response(
        {
            "input_tokens": 75,
            "input_tokens_details": {"cached_tokens": 64, "cache_write_tokens": 3},
            "output_tokens": 41,
            "output_tokens_details": {"reasoning_tokens": 18},
        }
    )
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens, usage.cache_creation_tokens) == (75, 41, 64, 3)
    assert usage.reasoning_tokens == 18 and usage.total_tokens == 116 and usage_of_response(None) is None
    assert error_from_event({"code": "rate_limit_exceeded", "message": "slow down"}, "x").status == 429
    server = error_from_event({"code": "server_error", "message": "boom"}, "x")
    assert server.status >= 500 and server.retryable and server.message == "boom"
    assert error_from_event({"code": "invalid_prompt", "message": "no"}, "x").status == 400


async def _serve(body: bytes, content_type: str = "text/event-stream") -> tuple[web.AppRunner, int]:
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": content_type})
        await resp.prepare(request)
        for frame in [f + b"\n\n" for f in body.split(b"\n\n") if f]:
            await resp.write(frame)
            await asyncio.sleep(0)
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/v1/responses", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


async def _relay(body: bytes) -> tuple[list[Any], Any, Exception | None]:
    runner, port = await _serve(body)
    deployment = OpenAIDeployment(provider="openai", model="gpt-5-2026-08-07", api_base=f"http://127.0.0.1:{port}/v1")
    events: list[Any] = []
    error: Exception | None = None
    async with aiohttp.ClientSession() as session:
        provider = OpenAIResponsesProvider(deployment, session)
        stream = await provider.responses_stream({"model": "gpt-5-2026-08-07", "input": "hi"}, "gpt-public", input_estimate=5)
        try:
            async for event in stream:
                events.append(event)
        except ProviderBadResponse as err:
            error = err
        await stream.aclose()
    await runner.cleanup()
    return events, stream.usage, error


def test_stream_relays_the_upstreams_bytes_and_rewrites_only_the_model() -> None:
    events, usage, error = asyncio.run(_relay(RECORDED))
    assert error is None and len(events) == len(FRAMES)
    for event, frame in zip(events, FRAMES, strict=True):
        if "response" in event:
            sent = orjson.loads(frame.split(b"\ndata: ", 1)[1])
            assert event.raw.startswith(b"event: " + event["type"].encode() + b"\ndata: ")
            relayed = orjson.loads(event.raw.split(b"\ndata: ", 1)[1])
            assert relayed == {**sent, "response": {**sent["response"], "model": "gpt-public"}}
        else:
            assert event.raw == frame  # byte for byte: obfuscation, encrypted_content and all
    assert usage is not None and not usage.estimated
    assert (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens, usage.reasoning_tokens) == (75, 41, 64, 18)

    # The framing hands the bytes on and knows the finished response (what the store keeps).
    extra: dict[str, Any] = {}
    frames = NativeFrames({"model": "gpt-public"}, "gpt-public", extra)
    out = b"".join(frames.chunk(e) for e in events) + frames.done()
    final = check_stream(parse_sse(out))
    assert extra["response_id"] == "resp_0a1b2c3d4e5f" and frames.finished_response() == final
    assert [i["type"] for i in final["output"]] == ["reasoning", "message", "function_call"]
    assert frames.error(ProviderBadResponse("late")) == b""  # already terminated: nothing added


def test_a_stream_cut_short_is_estimated_and_ends_in_response_failed() -> None:
    cut = b"".join(FRAMES[:8])  # up to the second text delta, no terminal event
    events, usage, error = asyncio.run(_relay(cut))
    assert isinstance(error, ProviderBadResponse) and len(events) == 8
    assert usage is not None and usage.estimated
    assert usage.prompt_tokens == 5 and usage.completion_tokens == 4  # 15 characters relayed
    frames = NativeFrames({"model": "gpt-public"}, "gpt-public", {})
    out = b"".join(frames.chunk(e) for e in events) + frames.error(error)
    parsed = parse_sse(out)
    final = check_stream(parsed)
    assert parsed[-1]["type"] == "response.failed" and parsed[-1]["sequence_number"] == 8
    assert final["id"] == "resp_0a1b2c3d4e5f" and final["model"] == "gpt-public" and final["status"] == "failed"
    assert final["error"] == {"code": error.code or "server_error", "message": error.message}
    assert [i["id"] for i in final["output"]] == ["rs_01"]  # the items the upstream finished


def test_a_body_that_is_not_an_event_stream_is_refused() -> None:
    async def run() -> Exception | None:
        runner, port = await _serve(b"{}", content_type="application/json")
        deployment = OpenAIDeployment(provider="openai", model="m", api_base=f"http://127.0.0.1:{port}/v1")
        try:
            async with aiohttp.ClientSession() as session:
                await OpenAIResponsesProvider(deployment, session).responses_stream({"model": "m"}, "p")
        except ProviderBadResponse as err:
            return err
        finally:
            await runner.cleanup()
        return None

    assert isinstance(asyncio.run(run()), ProviderBadResponse)


def test_config_choice_is_per_openai_deployment() -> None:
    assert OpenAIDeployment(provider="openai", model="m").responses == "translated"
    assert OpenAIDeployment(provider="openai", model="m", responses="native").responses == "native"
    with pytest.raises(pydantic.ValidationError):
        OpenAIDeployment(provider="openai", model="m", responses="passthrough")  # type: ignore[arg-type]
