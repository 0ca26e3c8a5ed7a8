"""The OpenAI stream reader over real HTTP against the fake (no gateway process): how a stream may end.

A stream is complete when it carried a finish reason or `[DONE]`. One that ends cleanly with
neither is a break (the answer was cut short), and an error event mid-stream is the upstream's
error, raised with its message, never relayed as a chunk.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from lockgate.config import OpenAIDeployment
from lockgate.errors import GatewayError, ProviderBadResponse, ProviderServerError
from lockgate.providers import build_provider
from lockgate.providers.http import HttpPool
from tests.fakes.openai_upstream import MID_STREAM_ERROR, UPSTREAM_KEY, FakeOpenAI

BODY = {"model": "upstream-model", "messages": [{"role": "user", "content": "Hi"}], "stream": True}


@pytest.fixture
async def provider(fake_openai: FakeOpenAI) -> AsyncIterator[Any]:
    pool = HttpPool()
    dep = OpenAIDeployment(provider="openai", model="upstream-model", api_base=fake_openai.url, api_key=UPSTREAM_KEY)
    yield build_provider(dep, pool.session_for(dep))
    await pool.aclose()


async def read(provider: Any) -> tuple[Any, list[dict[str, Any]], GatewayError | None]:
    """The stream, every chunk it yielded, and the error it ended with (None: complete)."""
    stream = await provider.chat_stream(dict(BODY))
    chunks: list[dict[str, Any]] = []
    try:
        async for chunk in stream:
            chunks.append(chunk)
    except GatewayError as err:
        return stream, chunks, err
    finally:
        await stream.aclose()
    return stream, chunks, None


def texts(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


async def test_a_complete_stream(provider: Any, fake_openai: FakeOpenAI) -> None:
    stream, chunks, err = await read(provider)
    assert err is None and texts(chunks) == "Hello from the fake upstream."
    assert stream.usage.prompt_tokens == 9 and stream.usage.completion_tokens == 7


async def test_a_finish_reason_without_done_is_complete(provider: Any, fake_openai: FakeOpenAI) -> None:
    fake_openai.faults.append({"no_done": True})
    stream, chunks, err = await read(provider)
    assert err is None and texts(chunks) == "Hello from the fake upstream."
    assert stream.usage.completion_tokens == 7


async def test_a_clean_end_without_finish_reason_or_done_is_a_break(provider: Any, fake_openai: FakeOpenAI) -> None:
    fake_openai.faults.append({"end_after": 2})
    stream, chunks, err = await read(provider)
    assert isinstance(err, ProviderBadResponse) and err.retryable  # resumable, and counted against the upstream
    assert "ended its stream before finishing" in err.message
    assert texts(chunks) == "Hello from " and stream.usage is None  # what was relayed stays relayed


async def test_an_error_event_mid_stream_is_the_upstreams_error(provider: Any, fake_openai: FakeOpenAI) -> None:
    fake_openai.faults.append({"error_after": 2})
    stream, chunks, err = await read(provider)
    assert isinstance(err, ProviderServerError) and err.retryable
    assert err.message == MID_STREAM_ERROR["message"]
    assert texts(chunks) == "Hello from " and not any("error" in c for c in chunks)
