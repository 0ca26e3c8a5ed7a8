"""In-process fakes for the pipeline and the routed stream: providers without HTTP, a recording sink.

The router is the real one (lockgate.router.Router) built over these providers through its public
``providers=`` hook: RoutedStream reads the router's private ``_config`` while resuming, so a fake
router would have to copy that private attribute.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any

from lockgate.config import Deployment, parse_config
from lockgate.errors import GatewayError
from lockgate.providers.base import ProviderResult, Usage
from lockgate.records import RequestRecord
from lockgate.router import Router, build_upstreams

Step = dict[str, Any] | GatewayError  # a chunk to yield, or an error to raise at that point


def chunk(content: str | None = None, *, role: str | None = None, finish: str | None = None, cid: str = "c-1") -> dict[str, Any]:
    """A chat.completion.chunk as OpenAI sends it (``usage: null`` on every content chunk)."""
    delta: dict[str, Any] = {}
    if role is not None:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "upstream-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        "usage": None,
    }


def usage_chunk(prompt: int, completion: int, cid: str = "c-1") -> dict[str, Any]:
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "upstream-model",
        "choices": [],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
    }


class FakeStream:
    """A ProviderStream over a script of chunks and errors; usage is known once its chunk passed."""

    def __init__(self, steps: list[Step]) -> None:
        self._steps = steps
        self.usage: Usage | None = None
        self.closed = 0

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._run()

    async def _run(self) -> AsyncIterator[dict[str, Any]]:
        for step in self._steps:
            if isinstance(step, GatewayError):
                raise step
            if step.get("usage"):
                self.usage = Usage.from_openai(step["usage"])
            yield step

    async def aclose(self) -> None:
        self.closed += 1


class FakeProvider:
    """A Provider whose answers are scripted per call: a ProviderResult/stream steps, or an error to raise."""

    name = "fake"

    def __init__(self, answers: list[Any] | None = None, streams: list[list[Step] | GatewayError] | None = None) -> None:
        self.answers = list(answers or [])
        self.streams = list(streams or [])
        self.bodies: list[dict[str, Any]] = []
        self.opened: list[FakeStream] = []

    async def chat(self, body: dict[str, Any]) -> ProviderResult:
        self.bodies.append(body)
        answer = self.answers.pop(0)
        if isinstance(answer, GatewayError):
            raise answer
        assert isinstance(answer, ProviderResult)
        return answer

    async def chat_stream(self, body: dict[str, Any]) -> FakeStream:
        self.bodies.append(body)
        script = self.streams.pop(0)
        if isinstance(script, GatewayError):
            raise script
        stream = FakeStream(script)
        self.opened.append(stream)
        return stream

    completions = chat
    completions_stream = chat_stream
    embeddings = chat

    async def aclose(self) -> None:
        pass


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def make_router(
    providers: dict[str, FakeProvider], *, stream_resume: bool = False, max_attempts: int = 3, model: str = "gpt-public"
) -> Router:
    """The real Router over fake providers, one deployment per entry (in priority order), on a fake clock."""
    cfg = parse_config(
        {
            "models": [
                {
                    "name": model,
                    "stream_resume": stream_resume,
                    "deployments": [{"provider": "mock", "model": name, "id": name} for name in providers],
                }
            ],
            "router": {"max_attempts": max_attempts, "deadline_s": 60},
        },
        env={},
    )
    clock = FakeClock()

    def provider_for(dep: Deployment) -> Any:
        return providers[dep.model]

    return Router(cfg, build_upstreams(cfg, provider_for), clock=clock, sleep=clock.sleep, rng=random.Random(3))


class RecordingSinks:
    """Stands in for SinkQueue: keeps every emitted record in order."""

    def __init__(self) -> None:
        self.records: list[RequestRecord] = []

    def emit(self, record: RequestRecord) -> None:
        self.records.append(record)
