"""The mock provider: deterministic answers with no upstream, for demos and load tests of client apps.

It answers chat, legacy completions and embeddings in OpenAI's exact shapes,
with configurable latency before the first token and streaming pace, so an
application can be exercised offline through the real gateway.
"""

from __future__ import annotations

import array
import asyncio
import base64
import hashlib
import math
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from lockgate.config import MockDeployment
from lockgate.errors import InvalidRequest
from lockgate.providers.base import ProviderResult, Usage, estimate_tokens, openai_usage


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _prompt_text(body: dict[str, Any]) -> str:
    if "messages" in body:
        return "\n".join(_text_of(m.get("content")) for m in body["messages"] if isinstance(m, dict))
    prompt = body.get("prompt", "")
    return prompt if isinstance(prompt, str) else " ".join(p for p in prompt if isinstance(p, str))


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return _text_of(message.get("content"))
    return _prompt_text(body)


class MockStream:
    def __init__(self, chunks: AsyncIterator[dict[str, Any]]) -> None:
        self._chunks = chunks
        self.usage: Usage | None = None

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._chunks

    async def aclose(self) -> None:
        await self._chunks.aclose()  # type: ignore[attr-defined]


class MockProvider:
    name = "mock"

    def __init__(self, deployment: MockDeployment) -> None:
        self._dep = deployment
        self._latency_s = deployment.mock_latency_ms / 1000.0
        self._gap_s = 1.0 / deployment.mock_tokens_per_s if deployment.mock_tokens_per_s else 0.0

    def _reply(self, body: dict[str, Any]) -> str:
        if self._dep.mock_response is not None:
            return self._dep.mock_response
        said = " ".join(_last_user_text(body).split())[:200]
        return f"This is a mock reply from Lockgate. You said: {said}" if said else "This is a mock reply from Lockgate."

    def _pieces(self, body: dict[str, Any]) -> tuple[list[str], str]:
        """The reply as one piece (token) per word, and the finish reason."""
        words = self._reply(body).split(" ")
        pieces = [w + " " for w in words[:-1]] + [words[-1]]
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if isinstance(limit, int) and 0 < limit < len(pieces):
            return pieces[:limit], "length"
        return pieces, "stop"

    def _usage(self, body: dict[str, Any], pieces: list[str]) -> Usage:
        return Usage(prompt_tokens=estimate_tokens(_prompt_text(body)), completion_tokens=len(pieces))

    async def chat(self, body: dict[str, Any]) -> ProviderResult:
        if self._latency_s:
            await asyncio.sleep(self._latency_s)
        pieces, finish = self._pieces(body)
        usage = self._usage(body, pieces)
        return ProviderResult(
            body={
                "id": f"chatcmpl-mock-{uuid.uuid4().hex[:24]}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "".join(pieces), "refusal": None, "annotations": []},
                        "logprobs": None,
                        "finish_reason": finish,
                    }
                ],
                "usage": openai_usage(usage),
                "service_tier": "default",
                "system_fingerprint": "fp_lockgate_mock",
            },
            usage=usage,
        )

    def _paced(
        self,
        base: dict[str, Any],
        pieces: list[str],
        finish: str,
        usage: Usage,
        usage_body: dict[str, Any],
        choice: Callable[[str | None, str | None], dict[str, Any]],
        opening: dict[str, Any] | None = None,
    ) -> MockStream:
        """Pace pieces out as chunks: an opening chunk, one per piece, the finish chunk, then usage."""
        stream: MockStream

        async def chunks() -> AsyncIterator[dict[str, Any]]:
            if self._latency_s:
                await asyncio.sleep(self._latency_s)
            if opening is not None:
                yield {**base, "choices": [opening]}
            for piece in pieces:
                if self._gap_s:
                    await asyncio.sleep(self._gap_s)
                yield {**base, "choices": [choice(piece, None)]}
            yield {**base, "choices": [choice(None, finish)]}
            stream.usage = usage
            yield {**base, "choices": [], "usage": usage_body}

        stream = MockStream(chunks())
        return stream

    async def chat_stream(self, body: dict[str, Any]) -> MockStream:
        pieces, finish = self._pieces(body)
        usage = self._usage(body, pieces)
        base = {
            "id": f"chatcmpl-mock-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body["model"],
            "system_fingerprint": "fp_lockgate_mock",
            "usage": None,
        }

        def choice(piece: str | None, finish_reason: str | None) -> dict[str, Any]:
            delta = {"content": piece} if piece is not None else {}
            return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}

        opening = {
            "index": 0,
            "delta": {"role": "assistant", "content": "", "refusal": None},
            "logprobs": None,
            "finish_reason": None,
        }
        return self._paced(base, pieces, finish, usage, openai_usage(usage), choice, opening)

    async def completions(self, body: dict[str, Any]) -> ProviderResult:
        if self._latency_s:
            await asyncio.sleep(self._latency_s)
        pieces, finish = self._pieces(body)
        usage = self._usage(body, pieces)
        return ProviderResult(
            body={
                "id": f"cmpl-mock-{uuid.uuid4().hex[:24]}",
                "object": "text_completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [{"text": "".join(pieces), "index": 0, "logprobs": None, "finish_reason": finish}],
                "usage": openai_usage(usage, details=False),
            },
            usage=usage,
        )

    async def completions_stream(self, body: dict[str, Any]) -> MockStream:
        pieces, finish = self._pieces(body)
        usage = self._usage(body, pieces)
        base = {
            "id": f"cmpl-mock-{uuid.uuid4().hex[:24]}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": body["model"],
        }

        def choice(piece: str | None, finish_reason: str | None) -> dict[str, Any]:
            return {"text": piece or "", "index": 0, "logprobs": None, "finish_reason": finish_reason}

        return self._paced(base, pieces, finish, usage, openai_usage(usage, details=False), choice)

    async def embeddings(self, body: dict[str, Any]) -> ProviderResult:
        raw = body.get("input")
        if isinstance(raw, str):
            inputs: list[Any] = [raw]
        elif isinstance(raw, list) and raw and all(isinstance(x, int) for x in raw):
            inputs = [raw]  # one token array
        elif isinstance(raw, list) and raw:
            inputs = raw
        else:
            raise InvalidRequest("'input' must be a non-empty string or array.", param="input")
        dims = body.get("dimensions") or self._dep.mock_embedding_dims
        if not isinstance(dims, int) or dims < 1 or dims > 8192:
            raise InvalidRequest("'dimensions' must be an integer from 1 to 8192.", param="dimensions")
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        tokens = 0
        for i, item in enumerate(inputs):
            text = item if isinstance(item, str) else " ".join(map(str, item))
            tokens += estimate_tokens(text) if isinstance(item, str) else len(item)
            vector = _embed(text, dims)
            value: Any = base64.b64encode(array.array("f", vector).tobytes()).decode() if as_base64 else vector
            data.append({"object": "embedding", "index": i, "embedding": value})
        usage = Usage(prompt_tokens=tokens)
        return ProviderResult(
            body={
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
            usage=usage,
        )

    async def aclose(self) -> None:
        return None


def _embed(text: str, dims: int) -> list[float]:
    """A deterministic unit vector for a text: same text, same vector."""
    out: list[float] = []
    counter = 0
    while len(out) < dims:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        out.extend((b - 127.5) / 127.5 for b in digest)
        counter += 1
    out = out[:dims]
    norm = math.sqrt(sum(x * x for x in out)) or 1.0
    return [x / norm for x in out]
