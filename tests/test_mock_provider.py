"""The mock provider through a real gateway: deterministic replies, latency and pacing, workers."""

from __future__ import annotations

import time
from collections.abc import Callable

import openai

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
