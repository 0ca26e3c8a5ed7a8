"""RoutedStream's branches (lockgate/routing/resume.py) over the real Router and fake providers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from lockgate.errors import GatewayError, ProviderBadResponse, ProviderServerError, ProviderTimeout
from lockgate.router import Attempt, Router, Upstream
from lockgate.routing.resume import Opened, RoutedStream
from tests.pipeline_fakes import FakeProvider, chunk, make_router

BODY: dict[str, Any] = {"model": "gpt-public", "messages": [{"role": "user", "content": "Tell me"}], "stream": True}


def opener(body: dict[str, Any]) -> Callable[[Upstream], Awaitable[Opened]]:
    """Opens a stream and reads its first chunk, as the pipeline does."""

    async def call(upstream: Upstream) -> Opened:
        stream = await upstream.provider.chat_stream(body)
        chunks = stream.__aiter__()
        try:
            first = await chunks.__anext__()
        except StopAsyncIteration:
            first = None
        return stream, chunks, first

    return call


async def open_routed(router: Router, *, resume: bool) -> tuple[RoutedStream, list[Attempt]]:
    route = router.get("gpt-public")
    assert route is not None
    attempts: list[Attempt] = []
    opened = await router.call(route, opener(BODY), attempts, hold=True)
    routed = RoutedStream(router, route, opened, attempts, body=BODY, reopen=opener if resume else None)
    return routed, attempts


async def collect(chunks: AsyncIterator[dict[str, Any]], into: list[dict[str, Any]]) -> None:
    async for c in chunks:
        into.append(c)


def text(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def first_broken(err: GatewayError) -> list[Any]:
    return [chunk(role="assistant", content="", cid="first"), chunk("Once upon ", cid="first"), err]


async def test_without_resume_the_break_surfaces_and_counts_against_the_deployment() -> None:
    a = FakeProvider(streams=[first_broken(ProviderServerError("reset"))])
    b = FakeProvider(streams=[[chunk("never")]])
    router = make_router({"dep-a": a, "dep-b": b}, stream_resume=False)
    routed, attempts = await open_routed(router, resume=False)
    seen: list[dict[str, Any]] = []
    with pytest.raises(ProviderServerError):
        await collect(routed.__aiter__(), seen)
    assert text(seen) == "Once upon "
    assert len(attempts) == 1 and isinstance(attempts[0].error, ProviderServerError)
    assert attempts[0].upstream.health.describe(router.clock())["recent_failures"] == 1
    assert b.bodies == [] and routed.resumes == 0


async def test_a_retryable_break_resumes_elsewhere_with_the_prefix_and_the_same_id() -> None:
    a = FakeProvider(streams=[first_broken(ProviderServerError("reset"))])
    # The next deployment repeats the role chunk and the space the first one had sent.
    rest = [chunk(role="assistant", content="", cid="second"), chunk(" a time", cid="second"), chunk(finish="stop", cid="second")]
    b = FakeProvider(streams=[rest])
    router = make_router({"dep-a": a, "dep-b": b}, stream_resume=True)
    routed, attempts = await open_routed(router, resume=True)
    seen: list[dict[str, Any]] = []
    await collect(routed.__aiter__(), seen)
    # The client's stream reads as one: first's id, no second role chunk, no doubled space.
    assert text(seen) == "Once upon a time"
    assert {c["id"] for c in seen} == {"first"}
    # (The first role chunk is the opened stream's first, relayed by the pipeline itself.)
    assert not any(c["choices"][0]["delta"].get("role") for c in seen)
    assert seen[-1]["choices"][0]["finish_reason"] == "stop"
    # The resumed request carries what was delivered, trailing whitespace trimmed, as the assistant's prefix.
    [resumed_body] = b.bodies
    assert resumed_body["messages"][:-1] == BODY["messages"]
    assert resumed_body["messages"][-1] == {"role": "assistant", "content": "Once upon"}
    assert routed.resumes == 1 and routed.upstream.id == "dep-b"
    assert [x.upstream.id for x in attempts] == ["dep-a", "dep-b"]
    assert isinstance(attempts[0].error, ProviderServerError) and attempts[1].error is None
    assert a.opened[0].closed >= 1  # the broken stream was let go


async def test_a_non_retryable_break_is_not_resumed() -> None:
    cap = ProviderTimeout("max_stream_duration_s reached", code="max_stream_duration", retryable=False)
    a = FakeProvider(streams=[first_broken(cap)])
    b = FakeProvider(streams=[[chunk("never")]])
    router = make_router({"dep-a": a, "dep-b": b}, stream_resume=True)
    routed, attempts = await open_routed(router, resume=True)
    seen: list[dict[str, Any]] = []
    with pytest.raises(ProviderTimeout) as caught:
        await collect(routed.__aiter__(), seen)
    assert caught.value is cap
    assert b.bodies == [] and routed.resumes == 0 and len(attempts) == 1


async def test_a_break_before_any_text_is_not_resumed() -> None:
    a = FakeProvider(streams=[[chunk(role="assistant", content=""), ProviderServerError("reset")]])
    b = FakeProvider(streams=[[chunk("never")]])
    router = make_router({"dep-a": a, "dep-b": b}, stream_resume=True)
    routed, _ = await open_routed(router, resume=True)
    with pytest.raises(ProviderServerError):
        await collect(routed.__aiter__(), [])
    assert b.bodies == []


async def test_resume_gives_up_after_max_attempts() -> None:
    # max_attempts 2: one resume at most; the resumed stream breaks too and that error surfaces.
    a = FakeProvider(streams=[first_broken(ProviderServerError("reset"))])
    second_break = ProviderBadResponse("broke off again")
    b = FakeProvider(streams=[[chunk(role="assistant", content=""), chunk("a time", cid="x"), second_break]])
    c = FakeProvider(streams=[[chunk("never")]])
    router = make_router({"dep-a": a, "dep-b": b, "dep-c": c}, stream_resume=True, max_attempts=2)
    routed, attempts = await open_routed(router, resume=True)
    seen: list[dict[str, Any]] = []
    with pytest.raises(ProviderBadResponse) as caught:
        await collect(routed.__aiter__(), seen)
    assert caught.value is second_break
    assert text(seen) == "Once upon a time"
    assert routed.resumes == 1 and c.bodies == []
    assert [x.upstream.id for x in attempts] == ["dep-a", "dep-b"]
    assert attempts[1].error is second_break


async def test_the_resumed_role_chunk_is_dropped_when_nothing_is_trimmed() -> None:
    # Delivered text without trailing whitespace: no trimming hides the resumed stream's role chunk.
    a = FakeProvider(streams=[[chunk(role="assistant", content=""), chunk("Once upon a"), ProviderServerError("reset")]])
    b = FakeProvider(streams=[[chunk(role="assistant", content=""), chunk(" time"), chunk(finish="stop")]])
    router = make_router({"dep-a": a, "dep-b": b}, stream_resume=True)
    routed, _ = await open_routed(router, resume=True)
    seen: list[dict[str, Any]] = []
    await collect(routed.__aiter__(), seen)
    assert b.bodies[0]["messages"][-1] == {"role": "assistant", "content": "Once upon a"}
    assert text(seen) == "Once upon a time"
    assert [c["choices"][0]["delta"] for c in seen] == [{"content": "Once upon a"}, {"content": " time"}, {}]
